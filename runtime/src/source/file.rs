//! The `file` source: a JSON array, JSON lines, or CSV with a header line (or, with
//! `FORMAT="binary"`, the whole file as one message), read once from the path `DATASOURCE`
//! names (relative to the file that defines the stream).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;

use super::{Chunk, Emitter, Reading as SourceReading, Resources, Source, SourceContext};
use crate::checkpoint::Position;
use crate::stream::{FileType, Format, StreamDef};
use crate::value::Row;

struct Line<'a> {
    file: &'a str,
    line: usize,
}

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// Reads a file once.
pub(super) struct FileSource;

impl Source for FileSource {
    fn check(&self, def: &StreamDef, _resources: &Resources) -> Result<(), String> {
        let path = def.datasource_path();
        if path.is_dir() {
            return Err(format!(
                "DATASOURCE {} is a folder: name a file in it (this version reads one file per stream)",
                path.display()
            ));
        }
        if !path.is_file() {
            return Err(format!(
                "DATASOURCE {} does not exist (relative paths start at the folder of the file that defines the stream)",
                path.display()
            ));
        }
        Ok(())
    }

    fn start(&self, ctx: SourceContext, tx: mpsc::Sender<Chunk>) -> SourceReading {
        Box::pin(async move { run(&ctx, &tx).await })
    }

    fn names_values(&self, def: &StreamDef) -> bool {
        def.file_type() == FileType::Csv
    }

    fn reads_tables_whole(&self) -> bool {
        true
    }

    fn replayable(&self, _def: &StreamDef, _resources: &Resources) -> Result<(), String> {
        Ok(())
    }

    /// Only when every rule joins before the first line: a rule that joined later would get
    /// the rest of the file, where a reading of its own gives it all.
    fn shares_by_default(&self, _def: &StreamDef, joined_first: bool) -> bool {
        joined_first
    }
}

async fn run(ctx: &SourceContext, tx: &mpsc::Sender<Chunk>) -> Result<(), String> {
    let path = ctx.def.datasource_path();
    let shown = path.display().to_string();
    let cannot_read = |e: std::io::Error| format!("cannot read {shown}: {e}");
    if ctx.def.options.format != Format::Binary && ctx.def.file_type() == FileType::Lines {
        return lines_apart(ctx, tx).await;
    }
    let mut out = Emitter::new(ctx, tx);
    out.set_file_meta(&ctx.def.options.datasource);
    if ctx.def.options.format == Format::Binary {
        // eKuiper's `FORMAT="BINARY"`: the whole file is one message.
        if ctx.resume.is_some_and(|p| p.records > 0) {
            return Ok(());
        }
        let bytes = tokio::fs::read(&path).await.map_err(cannot_read)?;
        out.at(Position {
            offset: 0,
            records: 1,
        });
        if out.message(&bytes, &shown).await {
            out.flush().await;
        }
        return Ok(());
    }
    let bytes = tokio::fs::read(&path).await.map_err(cannot_read)?;
    // A JSON array or a CSV file is read whole; resuming skips the records already read.
    let skip = ctx.resume.map_or(0, |p| p.records);
    let at = |records: u64| Position { offset: 0, records };
    match ctx.def.file_type() {
        FileType::Lines => unreachable!("JSON lines are streamed above"),
        FileType::Json => {
            let rows = crate::json::RowDecoder::new()
                .decode_array(&bytes, ctx.clock.now_ms())
                .map_err(|e| format!("{shown}: expected a JSON array of objects: {e}"))?;
            for (i, row) in rows.into_iter().enumerate().skip(skip as usize) {
                out.at(at(i as u64 + 1));
                if !out.row(row).await {
                    return Ok(());
                }
            }
        }
        FileType::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .delimiter(ctx.def.options.delimiter)
                .has_headers(true)
                .flexible(false)
                .from_reader(bytes.as_slice());
            let headers: Vec<Arc<str>> = reader
                .headers()
                .map_err(|e| format!("{shown}: cannot read the CSV header: {e}"))?
                .iter()
                .map(Arc::from)
                .collect();
            for (i, record) in reader.records().enumerate().skip(skip as usize) {
                out.at(at(i as u64 + 1));
                match record {
                    Ok(record) => {
                        let now = ctx.clock.now_ms();
                        let row = Row::from_pairs(
                            headers
                                .iter()
                                .cloned()
                                .zip(record.iter().map(crate::value::Value::string))
                                .collect(),
                            now,
                        );
                        if !out.row(row).await {
                            return Ok(());
                        }
                    }
                    Err(e) => out.error(format!("{shown}:{}: {e}", i + 2)),
                }
            }
        }
    }
    out.flush().await;
    Ok(())
}

/// How much of a JSON-lines file is read at a time: the file is streamed, so memory stays flat
/// whatever its size (a line longer than this grows the buffer to hold it).
const CHUNK: usize = 256 * 1024;

/// Reads a JSON-lines file on a thread of its own (one of the blocking pool), decoding its
/// lines there too and sending the chunks from it: the rule's query and actions keep the
/// runtime's workers, and the reading costs no hand-off per block read. Where the future is
/// dropped (the run or the rule stopping), the thread stops at the next line.
async fn lines_apart(ctx: &SourceContext, tx: &mpsc::Sender<Chunk>) -> Result<(), String> {
    let ctx = ctx.clone();
    let tx = tx.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = StopOnDrop(Arc::clone(&stop));
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let path = ctx.def.datasource_path();
        let shown = path.display().to_string();
        let cannot_read = |e: std::io::Error| format!("cannot read {shown}: {e}");
        let mut out = Emitter::new(&ctx, &tx);
        out.set_file_meta(&ctx.def.options.datasource);
        let mut file = std::fs::File::open(&path).map_err(cannot_read)?;
        let from = ctx.resume.unwrap_or_default();
        if from.offset > 0 {
            use std::io::Seek;
            file.seek(std::io::SeekFrom::Start(from.offset))
                .map_err(cannot_read)?;
        }
        let mut reading = Reading {
            runtime: &runtime,
            stop: &stop,
        };
        lines(file, from, &shown, &mut out, &mut reading).map_err(cannot_read)?;
        if !reading.stopped() {
            reading.wait(out.flush());
        }
        Ok(())
    })
    .await
    .map_err(|e| format!("the file reading failed: {e}"))?
}

/// Raises its flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What the reading thread needs to hand on its chunks and to learn that it should stop.
struct Reading<'a> {
    runtime: &'a tokio::runtime::Handle,
    stop: &'a AtomicBool,
}

impl Reading<'_> {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Runs one step of the emitter to its end on this thread. Nearly every step is ready at
    /// once (a line decoded into the pending chunk); only sending a chunk into a full channel
    /// waits, and only then is the thread parked.
    fn wait<F: Future>(&mut self, step: F) -> F::Output {
        let mut step = std::pin::pin!(step);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match step.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(done) => done,
            // Polled again with a waker of its own: the channel keeps the last waker given.
            std::task::Poll::Pending => self.runtime.block_on(step),
        }
    }
}

/// Streams a JSON-lines file from `from` (the file is there already): one message per
/// non-blank line (a trailing `\r` is dropped), the last line counted even without a newline.
/// Up to [`CHUNK`] bytes are read at a time, straight into the buffer the lines are cut from.
/// Stops early when the run is stopping.
fn lines(
    file: std::fs::File,
    from: Position,
    shown: &str,
    out: &mut Emitter<'_>,
    reading: &mut Reading<'_>,
) -> std::io::Result<()> {
    use std::io::Read;
    let mut buf: Vec<u8> = Vec::with_capacity(2 * CHUNK);
    let mut line = from.records as usize;
    // The file offset of `buf[0]`.
    let mut base = from.offset;
    loop {
        buf.reserve(CHUNK);
        let read = (&file).take(CHUNK as u64).read_to_end(&mut buf)?;
        let eof = read == 0;
        let mut start = 0;
        let ends = memchr::memchr_iter(b'\n', &buf).chain(eof.then_some(buf.len()));
        for end in ends {
            line += 1;
            let text = &buf[start..end];
            start = end + 1;
            out.at(Position {
                offset: base + (end + usize::from(end < buf.len())) as u64,
                records: line as u64,
            });
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if reading.stopped() || !reading.wait(out.message(text, &Line { file: shown, line })) {
                return Ok(());
            }
        }
        if eof {
            return Ok(());
        }
        base += start as u64;
        buf.drain(..start);
    }
}
