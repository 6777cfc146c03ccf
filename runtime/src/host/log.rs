//! The `oort:sink/host` interface: a sink's log lines, tagged with the rule, action and instance
//! they come from, and held to a per-second budget so a flooding guest cannot flood the host log.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::{HasData, Linker};

use super::bindings::Level;
use super::bindings::oort::sink::host;

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
        self.take_at(Instant::now())
    }

    /// [`Self::take`] at the instant `now`.
    fn take_at(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.window) >= Duration::from_secs(1) {
            self.window = now;
            self.used = 0;
        }
        self.used += 1;
        self.used <= LOG_LINES_PER_SECOND
    }
}

/// The state of one instance's `host` interface: whose lines it writes, and its budget.
#[derive(Debug)]
pub struct LogCtx {
    tag: InstanceTag,
    budget: LogBudget,
}

impl LogCtx {
    /// A fresh budget for the instance `tag` names.
    pub fn new(tag: InstanceTag) -> Self {
        Self {
            tag,
            budget: LogBudget::default(),
        }
    }

    /// Who the instance works for.
    pub fn tag(&self) -> &InstanceTag {
        &self.tag
    }
}

impl host::Host for LogCtx {
    fn log(&mut self, level: Level, message: String) {
        if self.budget.take() {
            emit(&self.tag, level, &message);
        } else {
            self.tag.dropped_logs.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A store whose instances may log: gives the `host` interface its context.
pub trait LogView: Send {
    /// The instance's log context.
    fn log(&mut self) -> &mut LogCtx;
}

/// The [`HasData`] of the `host` interface: its bindings see only a [`LogCtx`].
pub struct Log;

impl HasData for Log {
    type Data<'a> = &'a mut LogCtx;
}

/// Links `oort:sink/host`.
pub fn add_to_linker<T: LogView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    host::add_to_linker::<T, Log>(linker, T::log)
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

#[cfg(test)]
mod tests {
    use super::host::Host;
    use super::*;

    fn tag() -> InstanceTag {
        InstanceTag {
            rule: "r".into(),
            action: "a_0".into(),
            instance: 0,
            dropped_logs: Arc::default(),
        }
    }

    #[test]
    fn the_budget_allows_a_seconds_worth_then_refills() {
        let mut budget = LogBudget::default();
        let start = budget.window;
        for _ in 0..LOG_LINES_PER_SECOND {
            assert!(budget.take_at(start));
        }
        assert!(!budget.take_at(start));
        assert!(!budget.take_at(start + Duration::from_millis(999)));
        assert!(budget.take_at(start + Duration::from_secs(1)));
        assert_eq!(budget.used, 1);
    }

    #[test]
    fn lines_past_the_budget_are_counted_as_dropped() {
        let tag = tag();
        let mut ctx = LogCtx::new(tag.clone());
        // A window that starts in an hour is not refilled while the test runs.
        ctx.budget.window = Instant::now() + Duration::from_secs(3600);
        for i in 0..LOG_LINES_PER_SECOND + 25 {
            ctx.log(Level::Trace, format!("line {i}"));
        }
        assert_eq!(tag.dropped_logs.load(Ordering::Relaxed), 25);
    }
}
