//! The `oort:sink/host` interface: a sink's log lines, tagged with the rule, action and instance
//! they come from, and held to a per-second budget so a flooding guest cannot flood the host log.
//! Guest text is capped and its control characters escaped before it reaches the host log, so a
//! guest's line is one host line and cannot pass for the host's own.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::{HasData, Linker};

use super::bindings::Level;
use super::bindings::oort::sink::host;
use super::bindings::v0_1::oort::sink::host as v0_1;

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

use super::guest_str::capped;

/// Whether `c` is escaped in a guest log line: control characters (CR, LF, ESC…), and the
/// Unicode line separators and direction overrides that could make a line read as another.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` as a host log line may hold it: [`capped`], with every character [`needs_escape`]
/// names written as an escape (`\n`, `\r`, `\u{1b}`).
pub fn sanitized(text: &str) -> Cow<'_, str> {
    let text = capped(text);
    if !text.contains(needs_escape) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if needs_escape(c) {
            let _ = write!(out, "{}", c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

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

impl v0_1::Host for LogCtx {
    fn log(&mut self, level: v0_1::Level, message: String) {
        let level = match level {
            v0_1::Level::Trace => Level::Trace,
            v0_1::Level::Debug => Level::Debug,
            v0_1::Level::Info => Level::Info,
            v0_1::Level::Warn => Level::Warn,
            v0_1::Level::Error => Level::Error,
        };
        host::Host::log(self, level, message);
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
    host::add_to_linker::<T, Log>(linker, T::log)?;
    v0_1::add_to_linker::<T, Log>(linker, T::log)
}

/// Writes one guest log line to the host log, tagged, [`sanitized`].
pub fn emit(tag: &InstanceTag, level: Level, message: &str) {
    let (rule, action, instance) = (&*tag.rule, &*tag.action, tag.instance);
    let message = sanitized(message.trim_end());
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
    fn guest_lines_cannot_forge_host_lines() {
        assert_eq!(sanitized("plain line, ünïcode"), "plain line, ünïcode");
        let forged =
            "ok\n2026-01-01T00:00:00Z  INFO oort: all delivered\r\u{1b}[2K\u{2028}x\u{202e}";
        let line = sanitized(forged);
        assert_eq!(
            line,
            "ok\\n2026-01-01T00:00:00Z  INFO oort: all delivered\\r\\u{1b}[2K\\u{2028}x\\u{202e}"
        );
        assert!(!line.contains(needs_escape), "{line}");
    }

    #[test]
    fn long_guest_strings_are_cut_and_marked() {
        let long = "é".repeat(3000);
        let cut = capped(&long);
        assert!(cut.ends_with("… [truncated: 6000 bytes]"), "{cut}");
        assert_eq!(cut.len(), 4096 + "… [truncated: 6000 bytes]".len());
        assert!(sanitized(&format!("{long}\n")).ends_with("[truncated: 6001 bytes]"));
        let short = "a".repeat(super::super::guest_str::GUEST_STRING_CAP);
        assert!(matches!(capped(&short), Cow::Borrowed(_)));
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
