//! The run summary as JSON (`oort run-rule --json`), with eKuiper's metric names.

use serde_json::{Value as Json, json};

use crate::engine::RunReport;

/// The report as a JSON document.
pub fn to_json(report: &RunReport) -> Json {
    let rules: Vec<Json> = report
        .rules
        .iter()
        .map(|r| {
            let actions: Vec<Json> = r
                .actions
                .iter()
                .map(|(name, plugin, m)| {
                    json!({
                        "name": name,
                        "sink": plugin,
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
                },
                "query": {
                    "records_in_total": r.rule.records_in.get(),
                    "records_out_total": r.rule.records_out.get(),
                    "filtered_total": r.rule.filtered.get(),
                    "exceptions_total": r.rule.exceptions.total(),
                    "last_exception": r.rule.exceptions.last(),
                    "process_time_us": r.rule.process_time_us.get(),
                    "late_total": r.rule.late.get(),
                    "pending_at_end": r.rule.pending_at_end.get(),
                },
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
