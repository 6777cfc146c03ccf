//! Sources: where a stream's rows come from. Each source decodes its messages into rows, fits
//! them to the stream's declared columns, stamps their time, and hands them to the rule in
//! chunks over a bounded channel (so a slow rule slows the source down; nothing is dropped).
//! A message that cannot be decoded is counted and logged with its position, never skipped
//! silently.

mod decode;
mod file;
pub mod memory;
mod mqtt;
mod stdin;

use std::sync::Arc;

use tokio::sync::mpsc;

pub use decode::{DecodeError, Decoder};
pub use memory::MemoryBus;

use crate::clock::Clock;
use crate::metrics::SourceMetrics;
use crate::stream::{Format, SourceType, StreamDef};
use crate::value::Row;

/// Rows handed to the rule at a time, at most.
pub const CHUNK_ROWS: usize = 256;

/// A chunk of rows.
pub type Chunk = Vec<Row>;

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
    /// The in-process bus, for memory streams.
    pub bus: Arc<MemoryBus>,
    /// MQTT broker settings (`--mqtt-conf`), for mqtt streams.
    pub mqtt: Arc<crate::mqtt::MqttConf>,
}

/// Checks that a stream can be read, without reading it (for mqtt streams: that its broker
/// settings are complete, without connecting).
pub fn check(def: &StreamDef, mqtt: &crate::mqtt::MqttConf) -> Result<(), SourceError> {
    let fail = |message: String| SourceError {
        stream: def.name.to_string(),
        origin: def.origin.clone(),
        message,
    };
    if def.options.format == Format::Delimited && def.columns.is_none() {
        let csv_file = def.options.source_type == SourceType::File
            && def.file_type() == crate::stream::FileType::Csv;
        if !csv_file {
            return Err(fail(
                "FORMAT=\"delimited\" needs declared columns to name the values".into(),
            ));
        }
    }
    match def.options.source_type {
        SourceType::File => {
            let path = def.datasource_path();
            if !path.is_file() {
                return Err(fail(format!(
                    "DATASOURCE {} does not exist (relative paths start at the folder of the file that defines the stream)",
                    path.display()
                )));
            }
            Ok(())
        }
        SourceType::Stdin | SourceType::Memory => Ok(()),
        SourceType::Mqtt => {
            let settings = mqtt
                .settings(def.options.conf_key.as_deref())
                .map_err(fail)?;
            settings.qos(1).map_err(fail)?;
            settings.check(&mqtt.base_dir()).map_err(fail)?;
            if def.options.datasource.is_empty() {
                return Err(fail("DATASOURCE must name the MQTT topic filter".into()));
            }
            Ok(())
        }
    }
}

/// Prepares a source and returns the future that runs it to the end of its input (or until
/// `tx` closes), sending chunks of rows. Subscriptions (memory topics) are made here, before
/// the future runs, so no message published after this call can be missed.
pub fn start(
    ctx: SourceContext,
    tx: mpsc::Sender<Chunk>,
) -> impl Future<Output = ()> + Send + 'static {
    let memory = (ctx.def.options.source_type == SourceType::Memory)
        .then(|| ctx.bus.subscribe(&ctx.def.options.datasource));
    async move {
        let name = ctx.def.name.clone();
        let result = match (ctx.def.options.source_type, memory) {
            (SourceType::File, _) => file::run(&ctx, &tx).await,
            (SourceType::Stdin, _) => stdin::run(&ctx, &tx).await,
            (SourceType::Memory, Some(rx)) => memory::run(&ctx, rx, &tx).await,
            (SourceType::Memory, None) => Err("no memory subscription".to_string()),
            (SourceType::Mqtt, _) => mqtt::run(&ctx, &tx).await,
        };
        if let Err(message) = result {
            tracing::error!(stream = %name, "source failed: {message}");
            ctx.metrics.exceptions.record(message);
        }
    }
}

/// Batches decoded rows into chunks and sends them, counting decode errors.
pub(crate) struct Emitter<'a> {
    ctx: &'a SourceContext,
    decoder: Decoder,
    tx: &'a mpsc::Sender<Chunk>,
    chunk: Chunk,
    now_ms: i64,
    closed: bool,
}

impl<'a> Emitter<'a> {
    pub(crate) fn new(ctx: &'a SourceContext, tx: &'a mpsc::Sender<Chunk>) -> Self {
        Self {
            ctx,
            decoder: Decoder::new(&ctx.def, ctx.event_time),
            tx,
            chunk: Vec::with_capacity(CHUNK_ROWS),
            now_ms: ctx.clock.now_ms(),
            closed: false,
        }
    }

    /// Decodes one message; `position` names it in error messages (`file:line`).
    pub(crate) async fn message(
        &mut self,
        bytes: &[u8],
        position: &(dyn std::fmt::Display + Sync),
    ) -> bool {
        match self.decoder.decode(bytes, self.now_ms) {
            Ok(row) => self.row(row).await,
            Err(err) => {
                self.error(format!("{position}: {err}"));
                !self.closed
            }
        }
    }

    /// Adds an already decoded row.
    pub(crate) async fn row(&mut self, row: Row) -> bool {
        match self.decoder.finish(row) {
            Ok(row) => self.chunk.push(row),
            Err(err) => self.error(err.to_string()),
        }
        if self.chunk.len() >= CHUNK_ROWS {
            return self.flush().await;
        }
        !self.closed
    }

    /// Whether decoded rows wait to be sent.
    pub(crate) fn pending(&self) -> bool {
        !self.chunk.is_empty()
    }

    pub(crate) fn error(&mut self, message: String) {
        tracing::warn!(stream = %self.ctx.def.name, "cannot decode a message: {message}");
        self.ctx.metrics.exceptions.record(message);
    }

    /// Sends the pending chunk; false once the rule has stopped listening.
    pub(crate) async fn flush(&mut self) -> bool {
        if !self.chunk.is_empty() && !self.closed {
            let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK_ROWS));
            let n = chunk.len() as u64;
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
