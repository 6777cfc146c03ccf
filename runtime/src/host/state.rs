//! What each sink instance's store holds: its WASI context (nothing granted but its files), its
//! resource table, memory limits, file guard, and the tag its log lines carry.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{Level, oort};
use super::fs_guard::FileGuard;

/// Who an instance works for: every log line it writes carries this.
#[derive(Debug, Clone)]
pub struct InstanceTag {
    /// The rule's id.
    pub rule: Arc<str>,
    /// The action's name, e.g. `file_0`.
    pub action: Arc<str>,
    /// Which of the action's instances.
    pub instance: u32,
    /// Log lines dropped because the instance logged too fast (shared by the action).
    pub dropped_logs: Arc<AtomicU64>,
}

/// Lines a sink may log per second (host `log` calls and stdout/stderr lines together); more are
/// dropped and counted, so a guest that floods its log cannot flood the host's.
pub const LOG_LINES_PER_SECOND: u32 = 200;

/// A per-instance budget of log lines, refilled every second.
#[derive(Debug)]
pub struct LogBudget {
    window: Instant,
    used: u32,
}

impl Default for LogBudget {
    fn default() -> Self {
        Self {
            window: Instant::now(),
            used: 0,
        }
    }
}

impl LogBudget {
    /// Takes one line from the budget; false when it is spent for this second.
    pub fn take(&mut self) -> bool {
        if self.window.elapsed().as_secs() >= 1 {
            self.window = Instant::now();
            self.used = 0;
        }
        self.used += 1;
        self.used <= LOG_LINES_PER_SECOND
    }
}

/// The data of one instance's store.
pub struct InstanceState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: StoreLimits,
    pub(crate) files: FileGuard,
    pub(crate) tag: InstanceTag,
    pub(crate) budget: LogBudget,
    /// Set when a call ran past its deadline, so the trap can say so.
    pub(crate) deadline_hit: bool,
    /// Epoch ticks the current call may still run.
    pub(crate) ticks_left: u64,
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl oort::sink::types::Host for InstanceState {}

impl oort::sink::host::Host for InstanceState {
    fn log(&mut self, level: Level, message: String) {
        if self.budget.take() {
            emit(&self.tag, level, &message);
        } else {
            self.tag.dropped_logs.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Writes one guest log line to the host log, tagged.
pub fn emit(tag: &InstanceTag, level: Level, message: &str) {
    let (rule, action, instance) = (&*tag.rule, &*tag.action, tag.instance);
    let message = message.trim_end();
    match level {
        Level::Trace => tracing::trace!(rule, action, instance, "sink: {message}"),
        Level::Debug => tracing::debug!(rule, action, instance, "sink: {message}"),
        Level::Info => tracing::info!(rule, action, instance, "sink: {message}"),
        Level::Warn => tracing::warn!(rule, action, instance, "sink: {message}"),
        Level::Error => tracing::error!(rule, action, instance, "sink: {message}"),
    }
}
