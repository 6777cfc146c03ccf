//! A sink's stdout and stderr: each line becomes a host log line tagged with the rule and action
//! (info for stdout, warn for stderr), with the same per-second budget as the `log` import.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use super::bindings::Level;
use super::log::{InstanceTag, LogBudget, emit};

/// Longest line kept; the rest of a longer line is cut.
const MAX_LINE: usize = 4096;

/// A guest output stream that turns lines into log records.
#[derive(Clone)]
pub struct LogStream {
    shared: Arc<Mutex<LineBuffer>>,
}

struct LineBuffer {
    tag: InstanceTag,
    level: Level,
    line: Vec<u8>,
    budget: LogBudget,
}

impl LogStream {
    /// A stream logging at `level` under `tag`.
    pub fn new(tag: InstanceTag, level: Level) -> Self {
        Self {
            shared: Arc::new(Mutex::new(LineBuffer {
                tag,
                level,
                line: Vec::new(),
                budget: LogBudget::default(),
            })),
        }
    }
}

impl LineBuffer {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.split_inclusive(|&b| b == b'\n') {
            let room = MAX_LINE.saturating_sub(self.line.len());
            let (body, ends_line) = match chunk.strip_suffix(b"\n") {
                Some(body) => (body, true),
                None => (chunk, false),
            };
            self.line.extend_from_slice(&body[..body.len().min(room)]);
            if ends_line {
                self.flush();
            }
        }
    }

    fn flush(&mut self) {
        if self.line.is_empty() {
            return;
        }
        if self.budget.take() {
            emit(&self.tag, self.level, &String::from_utf8_lossy(&self.line));
        } else {
            self.tag.dropped_logs.fetch_add(1, Ordering::Relaxed);
        }
        self.line.clear();
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        self.flush();
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for LogStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if let Ok(mut shared) = self.shared.lock() {
            shared.write(buf);
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if let Ok(mut shared) = self.shared.lock() {
            shared.flush();
        }
        Poll::Ready(Ok(()))
    }
}
