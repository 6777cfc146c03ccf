//! The outcome of a run and its two forms: the summary table printed at the end of
//! `oort run-rule`, and the JSON document of `--json`, with eKuiper's metric names.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value as Json, json};

use crate::metrics::{ActionMetrics, RuleMetrics, SourceMetrics};

/// The counters of one rule after (or during) a run.
#[derive(Debug, Clone)]
pub struct RuleReport {
    /// The rule's id.
    pub id: String,
    /// The stream it read.
    pub stream: String,
    /// The source's counters.
    pub source: Arc<SourceMetrics>,
    /// The query's counters.
    pub rule: Arc<RuleMetrics>,
    /// Each action of the rule, in the rule's order.
    pub actions: Vec<ActionReport>,
    /// The rule option `fireAtEnd`.
    pub fire_at_end: bool,
}

/// The counters of one action of a rule.
#[derive(Debug, Clone)]
pub struct ActionReport {
    /// The action's name in metrics and logs: `<plugin>_<index>`, as eKuiper names sink nodes.
    pub name: String,
    /// The sink it sends to (the plugin name).
    pub sink: String,
    /// Its counters.
    pub metrics: Arc<ActionMetrics>,
}

/// The outcome of a run.
#[derive(Debug, Default)]
pub struct RunReport {
    /// Per rule.
    pub rules: Vec<RuleReport>,
    /// How long the run took.
    pub elapsed: Duration,
    /// Whether the run was stopped before its sources ended.
    pub interrupted: bool,
}

impl RunReport {
    /// The rules that stopped by error (a source failed once their restarts were used up),
    /// with the last error.
    pub fn stopped_by_error(&self) -> Vec<(&str, String)> {
        self.rules
            .iter()
            .filter_map(|r| r.rule.stopped_by_error().map(|why| (r.id.as_str(), why)))
            .collect()
    }

    /// True when every row was decoded and evaluated, and every payload delivered (none
    /// failed, dead-lettered or left in a cache).
    pub fn all_delivered(&self) -> bool {
        self.rules.iter().all(|r| {
            r.source.exceptions.total() == 0
                && r.rule.stopped_by_error().is_none()
                && r.rule.exceptions.total() == 0
                && r.rule.late.get() == 0
                && r.actions.iter().all(|action| {
                    let a = &action.metrics;
                    a.failed.get() == 0 && a.dead_lettered.get() == 0 && a.cached.get() == 0
                })
        })
    }

    /// The summary table printed at the end of a run.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for rule in &self.rules {
            out.push_str(&format!(
                "rule {}: stream {}: {} rows read, {} decode errors; query: {} in, {} out, {} filtered, {} errors\n",
                rule.id,
                rule.stream,
                rule.source.records_out.get(),
                rule.source.exceptions.total(),
                rule.rule.records_in.get(),
                rule.rule.records_out.get(),
                rule.rule.filtered.get(),
                rule.rule.exceptions.total(),
            ));
            if let Some(last) = rule.source.exceptions.last() {
                out.push_str(&format!("  last decode error: {last}\n"));
            }
            let redelivered = rule.source.redelivered.get();
            if redelivered > 0 {
                out.push_str(&format!(
                    "  {redelivered} messages the broker sent again were read already: acknowledged, not read twice\n"
                ));
            }
            let unsent = rule.source.acks_unsent_at_stop.get();
            if unsent > 0 {
                out.push_str(&format!(
                    "  {unsent} acknowledgements the stop could not send to the broker: it sends those messages again, and the next run drops them\n"
                ));
            }
            let restarts = rule.rule.restarts.get();
            if restarts > 0 {
                out.push_str(&format!(
                    "  restarted {restarts} times after a source failed (restartStrategy); last failure: {}\n",
                    rule.rule.source_failures.last().unwrap_or_default()
                ));
            }
            if let Some(why) = rule.rule.stopped_by_error() {
                out.push_str(&format!(
                    "  STOPPED BY ERROR after {restarts} restarts: {why}\n"
                ));
            }
            let late = rule.rule.late.get();
            if late > 0 {
                out.push_str(&format!(
                    "  {late} rows arrived after the watermark (event time) and were not windowed\n"
                ));
            }
            let (windows, held) = (
                rule.rule.windows_open_at_end.get(),
                rule.rule.rows_held_at_end.get(),
            );
            if windows + held > 0 {
                let hint = if rule.fire_at_end {
                    ""
                } else {
                    ", as in eKuiper (rule option fireAtEnd sends the time windows at the end of the input)"
                };
                out.push_str(&format!(
                    "  at the end, not sent: windows still open {windows}, rows held (by them and the watermark) {held}{hint}\n"
                ));
            }
            if let Some(last) = rule.rule.exceptions.last() {
                out.push_str(&format!("  last query error: {last}\n"));
            }
            out.push_str(&format!(
                "  {:<20} {:<12} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8}  {}\n",
                "action",
                "sink",
                "in",
                "out",
                "failed",
                "omitted",
                "retries",
                "restarts",
                "version"
            ));
            for action in &rule.actions {
                let m = &action.metrics;
                out.push_str(&format!(
                    "  {:<20} {:<12} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8}  {}\n",
                    action.name,
                    action.sink,
                    m.records_in.get(),
                    m.records_out.get(),
                    m.failed.get(),
                    m.omitted.get(),
                    m.retries.get(),
                    m.restarts.get(),
                    m.version().unwrap_or_else(|| "built in".into()),
                ));
                let dead = m.dead_lettered.get();
                let cached = m.cached.get();
                let restored = m.cache_restored.get();
                if dead + cached + restored + m.cached_total.get() > 0 || !m.balanced() {
                    out.push_str(&format!(
                        "    {} payloads{} = {} delivered ({} resent from the cache) + {} dead-lettered + {} failed + {} still cached{}\n",
                        m.payloads.get(),
                        if restored > 0 { format!(" + {restored} restored from the cache") } else { String::new() },
                        m.records_out.get(),
                        m.resent.get(),
                        dead,
                        m.failed.get(),
                        cached,
                        if m.balanced() { "" } else { "  (DOES NOT ADD UP: please report this)" },
                    ));
                }
                if let Some(last) = m.exceptions.last() {
                    out.push_str(&format!("    last error: {last}\n"));
                }
                let dropped = m.dropped_logs.load(std::sync::atomic::Ordering::Relaxed);
                if dropped > 0 {
                    out.push_str(&format!(
                        "    {dropped} sink log lines dropped (rate limit)\n"
                    ));
                }
            }
        }
        out.push_str(&format!("finished in {:.3} s", self.elapsed.as_secs_f64()));
        if self.interrupted {
            out.push_str(" (stopped before the end of the input)");
        }
        out.push('\n');
        out
    }
}

/// One line per rule of the counters so far, for progress reports while a run goes on.
pub fn progress_lines(rules: &[RuleReport], elapsed: Duration) -> Vec<String> {
    rules
        .iter()
        .map(|rule| {
            let actions = rule
                .actions
                .iter()
                .map(|a| {
                    let m = &a.metrics;
                    format!(
                        "{} {} in, {} out, {} failed, {} dead-lettered, {} cached",
                        a.name,
                        m.records_in.get(),
                        m.records_out.get(),
                        m.failed.get(),
                        m.dead_lettered.get(),
                        m.cached.get()
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            format!(
                "progress after {:.1} s: rule {}: {} rows read, {} out, {} errors; {actions}",
                elapsed.as_secs_f64(),
                rule.id,
                rule.source.records_out.get(),
                rule.rule.records_out.get(),
                rule.source.exceptions.total() + rule.rule.exceptions.total(),
            )
        })
        .collect()
}

/// The report as a JSON document.
pub fn to_json(report: &RunReport) -> Json {
    let rules: Vec<Json> = report
        .rules
        .iter()
        .map(|r| {
            let actions: Vec<Json> = r
                .actions
                .iter()
                .map(|action| {
                    let m = &action.metrics;
                    json!({
                        "name": action.name,
                        "sink": action.sink,
                        "version": m.version(),
                        "version_loaded_at": m.version_loaded_at(),
                        "records_in_total": m.records_in.get(),
                        "records_out_total": m.records_out.get(),
                        "payloads_total": m.payloads.get(),
                        "failed_total": m.failed.get(),
                        "dead_letter_total": m.dead_lettered.get(),
                        "cached": m.cached.get(),
                        "cached_total": m.cached_total.get(),
                        "cache_restored_total": m.cache_restored.get(),
                        "resent_total": m.resent.get(),
                        "balanced": m.balanced(),
                        "omitted_total": m.omitted.get(),
                        "retries_total": m.retries.get(),
                        "restarts_total": m.restarts.get(),
                        "batches_total": m.batches.get(),
                        "collect_time_us": m.collect_time_ns.get() / 1000,
                        "exceptions_total": m.exceptions.total(),
                        "last_exception": m.exceptions.last(),
                        "dropped_logs_total": m.dropped_logs.load(std::sync::atomic::Ordering::Relaxed),
                        "reloads_total": m.reloads.get(),
                        "reload_refusals_total": m.reload_refusals.get(),
                        "swap_pauses_us": m.swap_pauses().iter().map(|ns| ns / 1000).collect::<Vec<_>>(),
                    })
                })
                .collect();
            json!({
                "id": r.id,
                "source": {
                    "stream": r.stream,
                    "records_out_total": r.source.records_out.get(),
                    "exceptions_total": r.source.exceptions.total(),
                    "last_exception": r.source.exceptions.last(),
                    "redelivered_dropped_total": r.source.redelivered.get(),
                    "acks_unsent_at_stop_total": r.source.acks_unsent_at_stop.get(),
                },
                "query": {
                    "records_in_total": r.rule.records_in.get(),
                    "records_out_total": r.rule.records_out.get(),
                    "filtered_total": r.rule.filtered.get(),
                    "exceptions_total": r.rule.exceptions.total(),
                    "last_exception": r.rule.exceptions.last(),
                    "process_time_us": r.rule.process_time_us.get(),
                    "late_total": r.rule.late.get(),
                    "windows_open_at_end": r.rule.windows_open_at_end.get(),
                    "rows_held_at_end": r.rule.rows_held_at_end.get(),
                },
                "restarts_total": r.rule.restarts.get(),
                "source_failures_total": r.rule.source_failures.total(),
                "last_source_failure": r.rule.source_failures.last(),
                "stopped_by_error": r.rule.stopped_by_error(),
                "actions": actions,
            })
        })
        .collect();
    json!({
        "rules": rules,
        "elapsed_ms": report.elapsed.as_millis() as u64,
        "interrupted": report.interrupted,
        "all_delivered": report.all_delivered(),
    })
}
