//! The `file` source: a JSON array, JSON lines, or CSV with a header line (or, with
//! `FORMAT="binary"`, the whole file as one message), read once from the path `DATASOURCE`
//! names (relative to the file that defines the stream).

use std::fmt;

use tokio::sync::mpsc;

use super::{Chunk, Emitter, Reading, Resources, Source, SourceContext};
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
            lines(file.into_std().await, from, &shown, &mut out)
                .await
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

/// Appends up to [`CHUNK`] bytes of `file` to `buf` on a blocking-pool thread; how many (0 at
/// the end of the file). The bytes are read straight into `buf`: `tokio::fs::File` would read
/// them into a buffer of its own and copy them over, and its reads grow the buffer they are
/// given (each growth a reallocation and a copy).
async fn read_chunk(
    file: std::fs::File,
    mut buf: Vec<u8>,
) -> std::io::Result<(std::fs::File, Vec<u8>, usize)> {
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        buf.reserve(CHUNK);
        let n = (&file).take(CHUNK as u64).read_to_end(&mut buf)?;
        Ok((file, buf, n))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Streams a JSON-lines file from `from` (the file is there already): one message per
/// non-blank line (a trailing `\r` is dropped), the last line counted even without a newline.
/// Stops early when the run is stopping.
async fn lines(
    mut file: std::fs::File,
    from: Position,
    shown: &str,
    out: &mut Emitter<'_>,
) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(2 * CHUNK);
    let mut line = from.records as usize;
    // The file offset of `buf[0]`.
    let mut base = from.offset;
    loop {
        let read;
        (file, buf, read) = read_chunk(file, buf).await?;
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
            if !out.message(text, &Line { file: shown, line }).await {
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
