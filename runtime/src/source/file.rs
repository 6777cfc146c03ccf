//! The `file` source: a JSON array, JSON lines, or CSV with a header line, read once from the
//! path `DATASOURCE` names (relative to the file that defines the stream).

use std::fmt;

use tokio::sync::mpsc;

use super::{Chunk, Emitter, SourceContext};
use crate::stream::FileType;
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

pub(super) async fn run(ctx: &SourceContext, tx: &mpsc::Sender<Chunk>) -> Result<(), String> {
    let path = ctx.def.datasource_path();
    let shown = path.display().to_string();
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mut out = Emitter::new(ctx, tx);
    match ctx.def.file_type() {
        FileType::Lines => {
            let mut start = 0;
            let ends = memchr::memchr_iter(b'\n', &bytes).chain(std::iter::once(bytes.len()));
            for (i, end) in ends.enumerate() {
                let line = &bytes[start..end];
                start = end + 1;
                let line_text = line.strip_suffix(b"\r").unwrap_or(line);
                if line_text.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let at = Line {
                    file: &shown,
                    line: i + 1,
                };
                if !out.message(line_text, &at).await {
                    return Ok(());
                }
            }
        }
        FileType::Json => {
            let rows = crate::json::RowDecoder::new()
                .decode_array(&bytes, ctx.clock.now_ms())
                .map_err(|e| format!("{shown}: expected a JSON array of objects: {e}"))?;
            for row in rows {
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
            for (i, record) in reader.records().enumerate() {
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
