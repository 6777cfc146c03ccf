//! The `file` source: a JSON array, JSON lines, or CSV with a header line (or, with
//! `FORMAT="binary"`, the whole file as one message), read once from the path `DATASOURCE`
//! names (relative to the file that defines the stream). A JSON-lines file is streamed, and on
//! more than one core its blocks of lines are decoded on other threads, handed on in file order.

use std::fmt;

use tokio::sync::mpsc;

use super::{Chunk, Decoder, Emitter, Reading, Resources, Source, SourceContext};
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

    fn start(&self, ctx: SourceContext, tx: mpsc::Sender<Chunk>) -> Reading {
        Box::pin(async move { run(&ctx, &tx).await })
    }

    fn names_values(&self, def: &StreamDef) -> bool {
        def.file_type() == FileType::Csv
    }

    fn serves_tables(&self) -> bool {
        true
    }

    fn replayable(&self, _def: &StreamDef, _resources: &Resources) -> Result<(), String> {
        Ok(())
    }
}

async fn run(ctx: &SourceContext, tx: &mpsc::Sender<Chunk>) -> Result<(), String> {
    let path = ctx.def.datasource_path();
    let shown = path.display().to_string();
    let cannot_read = |e: std::io::Error| format!("cannot read {shown}: {e}");
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
    let bytes = match ctx.def.file_type() {
        FileType::Lines => {
            let mut file = tokio::fs::File::open(&path).await.map_err(cannot_read)?;
            let from = ctx.resume.unwrap_or_default();
            if from.offset > 0 {
                use tokio::io::AsyncSeekExt;
                file.seek(std::io::SeekFrom::Start(from.offset))
                    .await
                    .map_err(cannot_read)?;
            }
            // A shared source decodes what its rules read, which changes as rules join: it
            // decodes on its task, between messages.
            match decode_workers() {
                workers if workers > 1 && ctx.interest.is_none() => {
                    lines_parallel(file, from, &shown, ctx, &mut out, workers).await
                }
                _ => lines(file, from, &shown, &mut out).await,
            }
            .map_err(cannot_read)?;
            out.flush().await;
            return Ok(());
        }
        _ => tokio::fs::read(&path).await.map_err(cannot_read)?,
    };
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
            let headers: Vec<std::sync::Arc<str>> = reader
                .headers()
                .map_err(|e| format!("{shown}: cannot read the CSV header: {e}"))?
                .iter()
                .map(std::sync::Arc::from)
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

/// Blocks of a JSON-lines file decoded at once on other threads: one per core the process may
/// run on, up to 4 (1: the file is decoded on the reading task, as one core would anyway).
fn decode_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// The lines of a buffer that holds a JSON-lines file from offset `base`, after `line` lines:
/// each line's number, its text (without the newline and a trailing `\r`) and the position
/// just past it. At `eof`, what follows the last newline is one more line (an empty one when
/// the file ends with a newline, so the last position is the file's end).
struct Lines<'a> {
    buf: &'a [u8],
    ends: std::iter::Chain<memchr::Memchr<'a>, std::option::IntoIter<usize>>,
    start: usize,
    base: u64,
    line: usize,
}

impl<'a> Lines<'a> {
    fn new(buf: &'a [u8], eof: bool, base: u64, line: usize) -> Self {
        Self {
            buf,
            ends: memchr::memchr_iter(b'\n', buf).chain(eof.then_some(buf.len())),
            start: 0,
            base,
            line,
        }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = (usize, &'a [u8], Position);

    fn next(&mut self) -> Option<Self::Item> {
        let end = self.ends.next()?;
        self.line += 1;
        let text = &self.buf[self.start..end];
        self.start = end + 1;
        let position = Position {
            offset: self.base + (end + usize::from(end < self.buf.len())) as u64,
            records: self.line as u64,
        };
        Some((
            self.line,
            text.strip_suffix(b"\r").unwrap_or(text),
            position,
        ))
    }
}

fn blank(text: &[u8]) -> bool {
    text.iter().all(u8::is_ascii_whitespace)
}

/// Streams a JSON-lines file from `from` (the file is there already): one message per
/// non-blank line (a trailing `\r` is dropped), the last line counted even without a newline.
/// Stops early when the run is stopping.
async fn lines(
    mut file: tokio::fs::File,
    from: Position,
    shown: &str,
    out: &mut Emitter<'_>,
) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
    let mut line = from.records as usize;
    // The file offset of `buf[0]`.
    let mut base = from.offset;
    loop {
        buf.reserve(CHUNK);
        let eof = file.read_buf(&mut buf).await? == 0;
        let mut lines = Lines::new(&buf, eof, base, line);
        for (number, text, position) in lines.by_ref() {
            out.at(position);
            if blank(text) {
                continue;
            }
            if !out
                .message(
                    text,
                    &Line {
                        file: shown,
                        line: number,
                    },
                )
                .await
            {
                return Ok(());
            }
        }
        if eof {
            return Ok(());
        }
        let start = lines.start;
        line = lines.line;
        base += start as u64;
        buf.drain(..start);
    }
}

/// A block of whole lines of a JSON-lines file, decoded on a blocking thread.
struct Block {
    bytes: Vec<u8>,
    /// Whether the file ends with it.
    eof: bool,
    /// The file offset of `bytes[0]`.
    base: u64,
    /// Lines before it.
    line: usize,
    now_ms: i64,
    shown: std::sync::Arc<str>,
}

/// What a block gave: each message's row (or why it gave none) with the position just past
/// it, the position past the block, and the decoder, for the next block.
struct Decoded {
    messages: Vec<(Position, Result<Row, String>)>,
    end: Position,
    decoder: Decoder,
}

impl Block {
    fn decode(self, mut decoder: Decoder) -> Decoded {
        let mut messages = Vec::new();
        let mut end = Position {
            offset: self.base,
            records: self.line as u64,
        };
        for (number, text, position) in Lines::new(&self.bytes, self.eof, self.base, self.line) {
            end = position;
            if blank(text) {
                continue;
            }
            let outcome = match decoder.decode(text, self.now_ms) {
                Ok(row) => decoder.finish(row).map_err(|e| e.to_string()),
                Err(e) => {
                    let at = Line {
                        file: &self.shown,
                        line: number,
                    };
                    Err(format!("{at}: {e}"))
                }
            };
            messages.push((position, outcome));
        }
        Decoded {
            messages,
            end,
            decoder,
        }
    }
}

/// [`lines`] with the decoding spread over `workers` blocking threads: the file is cut into
/// blocks of whole lines, each decoded (and fitted to the stream) on its own thread, and the
/// rows handed on in file order, so that the rule sees exactly what [`lines`] gives it (the
/// same rows, errors, positions and chunks) while its own task does only the query.
async fn lines_parallel(
    mut file: tokio::fs::File,
    from: Position,
    shown: &str,
    ctx: &SourceContext,
    out: &mut Emitter<'_>,
    workers: usize,
) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    let shown: std::sync::Arc<str> = shown.into();
    let mut idle: Vec<Decoder> = (0..workers)
        .map(|_| Decoder::reading(&ctx.def, ctx.event_time, &ctx.reads))
        .collect();
    let mut busy = std::collections::VecDeque::new();
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
    let mut base = from.offset;
    let mut line = from.records as usize;
    let mut eof = false;
    loop {
        while !eof && let Some(decoder) = idle.pop() {
            // A block ends after the last newline once at least `CHUNK` bytes are in (a
            // longer line grows it); at the end of the file it takes what is left.
            let cut = loop {
                buf.reserve(CHUNK);
                if file.read_buf(&mut buf).await? == 0 {
                    eof = true;
                    break buf.len();
                }
                if buf.len() >= CHUNK
                    && let Some(i) = memchr::memrchr(b'\n', &buf)
                {
                    break i + 1;
                }
            };
            let rest = buf.split_off(cut);
            let bytes = std::mem::replace(&mut buf, rest);
            let lines_in = memchr::memchr_iter(b'\n', &bytes).count();
            let block = Block {
                bytes,
                eof,
                base,
                line,
                now_ms: ctx.clock.now_ms(),
                shown: std::sync::Arc::clone(&shown),
            };
            base += cut as u64;
            line += lines_in;
            busy.push_back(tokio::task::spawn_blocking(move || block.decode(decoder)));
        }
        let Some(next) = busy.pop_front() else {
            return Ok(());
        };
        let decoded = match next.await {
            Ok(decoded) => decoded,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // The runtime is shutting down.
            Err(_) => return Ok(()),
        };
        idle.push(decoded.decoder);
        for (position, outcome) in decoded.messages {
            out.at(position);
            if !out.decoded(outcome).await {
                return Ok(());
            }
        }
        out.at(decoded.end);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::Path;
    use std::sync::Arc;

    use tokio::sync::mpsc;

    use super::{Emitter, Position, lines, lines_parallel};
    use crate::checkpoint::Positions;
    use crate::clock::Clock;
    use crate::source::{Resources, SourceContext};
    use crate::stream::parse_streams;

    /// What a rule is handed from a JSON-lines file: each chunk's rows and errors, and the
    /// position each chunk ends at, read with `workers` decoding threads (0: on the task).
    async fn read(path: &Path, options: &str, from: Position, workers: usize) -> Vec<String> {
        let text =
            format!("CREATE STREAM s () WITH (TYPE=\"file\", DATASOURCE=\"in.jsonl\"{options})");
        let def = parse_streams(&text, "streams.sql", path.parent().unwrap())
            .unwrap()
            .remove(0);
        let positions = Arc::new(Positions::default());
        let ctx = SourceContext {
            def: Arc::new(def),
            metrics: Arc::default(),
            clock: Clock::manual(1_000),
            event_time: options.contains("TIMESTAMP"),
            resources: Resources::default(),
            rule: "r".into(),
            positions: Some(Arc::clone(&positions)),
            resume: Some(from),
            reads: crate::sql::FieldsRead::All,
            meta: false,
            interest: None,
        };
        let (tx, mut rx) = mpsc::channel(1_000);
        let mut out = Emitter::new(&ctx, &tx);
        let mut file = tokio::fs::File::open(path).await.unwrap();
        use tokio::io::AsyncSeekExt;
        file.seek(std::io::SeekFrom::Start(from.offset))
            .await
            .unwrap();
        match workers {
            0 => lines(file, from, "in.jsonl", &mut out).await,
            n => lines_parallel(file, from, "in.jsonl", &ctx, &mut out, n).await,
        }
        .unwrap();
        out.flush().await;
        drop(out);
        drop(tx);
        let mut seen = Vec::new();
        while let Some(chunk) = rx.recv().await {
            seen.push(format!(
                "{:?} {:?} at {:?}",
                chunk.rows,
                chunk.errors,
                positions.taken()
            ));
        }
        seen
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn decoding_on_other_threads_hands_on_exactly_what_the_task_would() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        let mut text = Vec::new();
        for i in 0..6_000 {
            match i % 500 {
                7 => writeln!(text, "{{\"a\": {i}, broken").unwrap(),
                8 => writeln!(text).unwrap(),
                9 => write!(text, "{{\"a\": {i}, \"ts\": {i}}}\r\n").unwrap(),
                10 => writeln!(text, "   ").unwrap(),
                11 => writeln!(text, "{{\"a\": {i}, \"ts\": \"late\"}}").unwrap(),
                _ => writeln!(text, "{{\"a\": {i}, \"b\": \"row {i}\", \"ts\": {i}}}").unwrap(),
            }
            if i == 3_000 {
                // One line longer than a block.
                let long = "x".repeat(super::CHUNK + 10);
                writeln!(text, "{{\"a\": -1, \"long\": \"{long}\", \"ts\": 1}}").unwrap();
            }
        }
        for ends_with_newline in [true, false] {
            if !ends_with_newline {
                text.pop();
            }
            std::fs::File::create(&path)
                .unwrap()
                .write_all(&text)
                .unwrap();
            let middle = text.len() / 2;
            let middle = middle + memchr::memchr(b'\n', &text[middle..]).unwrap() + 1;
            let line = memchr::memchr_iter(b'\n', &text[..middle]).count() as u64;
            for options in ["", ", TIMESTAMP=\"ts\""] {
                for from in [
                    Position::default(),
                    Position {
                        offset: middle as u64,
                        records: line,
                    },
                ] {
                    let task = read(&path, options, from, 0).await;
                    assert!(task.len() > 10, "{} chunks", task.len());
                    for workers in 1..=3 {
                        let spread = read(&path, options, from, workers).await;
                        assert!(
                            spread == task,
                            "{workers} workers, options {options:?}, from {from:?}, newline at end: {ends_with_newline}"
                        );
                    }
                }
            }
        }
    }
}
