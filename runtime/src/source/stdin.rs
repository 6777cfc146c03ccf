//! The `stdin` source: one message per line of standard input, until it closes.

use std::fmt;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use super::{Chunk, Emitter, Reading, Resources, Source, SourceContext};
use crate::stream::StreamDef;

struct Line(usize);

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stdin:{}", self.0)
    }
}

/// Reads standard input.
pub(super) struct StdinSource;

impl Source for StdinSource {
    fn check(&self, _def: &StreamDef, _resources: &Resources) -> Result<(), String> {
        Ok(())
    }

    fn start(&self, ctx: SourceContext, tx: mpsc::Sender<Chunk>) -> Reading {
        Box::pin(async move { run(&ctx, &tx).await })
    }

    fn reads_stdin(&self) -> bool {
        true
    }

    /// As a file: when every rule joins before the first line (only one reading of stdin can
    /// be had, so several rules of a run on one stdin stream read it this way).
    fn shares_by_default(&self, _def: &StreamDef, joined_first: bool) -> bool {
        joined_first
    }

    fn serves_tables(&self) -> bool {
        false
    }

    fn replayable(&self, _def: &StreamDef, _resources: &Resources) -> Result<(), String> {
        Err(
            "stdin cannot be replayed: what was read is gone after a crash (use qos 0, or \
             a file or MQTT stream)"
                .into(),
        )
    }
}

async fn run(ctx: &SourceContext, tx: &mpsc::Sender<Chunk>) -> Result<(), String> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut out = Emitter::new(ctx, tx);
    let mut n = 0;
    loop {
        // Rows that arrive slowly are not held back waiting for a full chunk.
        let next =
            match tokio::time::timeout(std::time::Duration::from_millis(20), lines.next_line())
                .await
            {
                Ok(next) => next,
                Err(_) => {
                    if !out.flush().await {
                        return Ok(());
                    }
                    continue;
                }
            };
        let Some(line) = next.map_err(|e| format!("cannot read stdin: {e}"))? else {
            break;
        };
        n += 1;
        if line.trim().is_empty() {
            continue;
        }
        if !out.message(line.as_bytes(), &Line(n)).await {
            return Ok(());
        }
    }
    out.flush().await;
    Ok(())
}
