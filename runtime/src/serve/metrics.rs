//! `GET /metrics`: every rule's source, query and sink counters in the Prometheus text format,
//! under eKuiper's names (`kuiper_source_records_in_total{rule,type,op,op_instance}`, so its
//! dashboards keep working) and Oort's own (`oort_sink_failed_total`, reloads, cache depth,
//! the shared readings' `oort_shared_source_*{stream,time}`, ...). The counters live in the engine's atomics; a scrape reads them into a snapshot that
//! the Prometheus client crate encodes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::{Phase, Server};

/// A sample's labels, shared by the samples of one node (a scrape of 1,000 rules has some
/// 25,000 samples; copying their labels was much of its time).
type Labels = Arc<[(&'static str, String)]>;

fn labels<const N: usize>(pairs: [(&'static str, String); N]) -> Labels {
    Arc::from(pairs)
}

/// One metric family: its help, whether it is a gauge, and its samples.
#[derive(Debug, Default)]
struct Family {
    help: &'static str,
    gauge: bool,
    samples: Vec<(Labels, u64)>,
}

/// The values read at one scrape, by metric name (counters without `_total`: the encoder adds
/// it).
#[derive(Debug, Default)]
struct Snapshot(BTreeMap<&'static str, Family>);

impl Snapshot {
    fn add(
        &mut self,
        name: &'static str,
        help: &'static str,
        gauge: bool,
        labels: &Labels,
        value: u64,
    ) {
        let family = self.0.entry(name).or_insert_with(|| Family {
            help,
            gauge,
            samples: Vec::new(),
        });
        family.samples.push((Arc::clone(labels), value));
    }

    fn counter(&mut self, name: &'static str, help: &'static str, labels: &Labels, value: u64) {
        self.add(name, help, false, labels, value);
    }

    fn gauge(&mut self, name: &'static str, help: &'static str, labels: &Labels, value: u64) {
        self.add(name, help, true, labels, value);
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, family) in &self.0 {
            if family.gauge {
                let kind = ConstGauge::new(0i64).metric_type();
                let mut metric = encoder.encode_descriptor(name, family.help, None, kind)?;
                let gauge = |value: u64| ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
                if let [(labels, value)] = &family.samples[..]
                    && labels.is_empty()
                {
                    // A server-wide value: `name 1`, not `name{} 1`.
                    gauge(*value).encode(metric)?;
                    continue;
                }
                for (labels, value) in &family.samples {
                    gauge(*value).encode(metric.encode_family(&&labels[..])?)?;
                }
            } else {
                let kind = ConstCounter::new(0u64).metric_type();
                let mut metric = encoder.encode_descriptor(name, family.help, None, kind)?;
                for (labels, value) in &family.samples {
                    ConstCounter::new(*value).encode(metric.encode_family(&&labels[..])?)?;
                }
            }
        }
        Ok(())
    }
}

fn node(rule: &str, kind: &str, op: &str) -> Labels {
    labels([
        ("rule", rule.into()),
        ("type", kind.into()),
        ("op", op.into()),
        ("op_instance", "0".into()),
    ])
}

async fn snapshot(server: &Server) -> Snapshot {
    let mut s = Snapshot::default();
    let registry = server.registry.lock().await;
    let mut by_status: BTreeMap<&str, u64> = BTreeMap::new();
    for (id, entry) in &registry.rules {
        let Ok(state) = entry.state.lock() else {
            continue;
        };
        let running = matches!(state.phase, Some(Phase::Running));
        let rule_label = labels([("rule", id.clone())]);
        *by_status
            .entry(if running { "running" } else { "stopped" })
            .or_default() += 1;
        s.gauge(
            "oort_rule_running",
            "1 while the rule runs, 0 when it is stopped",
            &rule_label,
            u64::from(running),
        );
        let Some((reports, _)) = &state.live else {
            continue;
        };
        for r in reports {
            for stream in r.stream.split(", ") {
                let l = node(id, "source", &format!("source_{stream}"));
                let src = &r.source;
                let out = src.records_out.get();
                s.counter(
                    "kuiper_source_records_in",
                    "Rows the source received",
                    &l,
                    out + src.exceptions.total(),
                );
                s.counter(
                    "kuiper_source_records_out",
                    "Rows the source handed to the rule",
                    &l,
                    out,
                );
                s.counter(
                    "kuiper_source_exceptions",
                    "Messages the source could not decode",
                    &l,
                    src.exceptions.total(),
                );
                s.counter(
                    "oort_source_acks_unsent_at_stop",
                    "Acknowledgements a stop could not send to the MQTT broker within its limit",
                    &l,
                    src.acks_unsent_at_stop.get(),
                );
            }
            let l = node(id, "op", "op_project");
            let q = &r.rule;
            s.counter(
                "kuiper_op_records_in",
                "Rows the query received",
                &l,
                q.records_in.get(),
            );
            s.counter(
                "kuiper_op_records_out",
                "Messages the query produced",
                &l,
                q.records_out.get(),
            );
            s.counter(
                "kuiper_op_exceptions",
                "Rows whose evaluation failed",
                &l,
                q.exceptions.total(),
            );
            s.gauge(
                "kuiper_op_process_latency_us",
                "Mean time the query spent on a row, in microseconds",
                &l,
                q.process_time_us.get() / q.records_in.get().max(1),
            );
            s.counter(
                "oort_op_filtered",
                "Rows the WHERE clause dropped",
                &l,
                q.filtered.get(),
            );
            s.counter(
                "oort_op_late",
                "Rows that arrived after the watermark (event time)",
                &l,
                q.late.get(),
            );
            s.counter(
                "oort_op_windows_open_at_end",
                "Windows still open when the rule's input ended or it stopped, not sent",
                &l,
                q.windows_open_at_end.get(),
            );
            s.counter(
                "oort_op_rows_held_at_end",
                "Rows held by those windows and the watermark, not sent",
                &l,
                q.rows_held_at_end.get(),
            );
            s.counter(
                "oort_rule_restarts",
                "Times a failed source of the rule was started again (restartStrategy)",
                &rule_label,
                q.restarts.get(),
            );
            for a in &r.actions {
                let l = node(id, "sink", &format!("sink_{}", a.name));
                let m = &a.metrics;
                s.counter(
                    "kuiper_sink_records_in",
                    "Messages the action received",
                    &l,
                    m.records_in.get(),
                );
                s.counter(
                    "kuiper_sink_records_out",
                    "Payloads the sink accepted",
                    &l,
                    m.records_out.get(),
                );
                s.counter(
                    "kuiper_sink_exceptions",
                    "Errors of the action",
                    &l,
                    m.exceptions.total(),
                );
                s.gauge(
                    "kuiper_sink_process_latency_us",
                    "Mean time of one call into the sink, in microseconds",
                    &l,
                    m.collect_time_ns.get() / 1000 / m.batches.get().max(1),
                );
                s.counter(
                    "oort_sink_failed",
                    "Payloads lost and counted",
                    &l,
                    m.failed.get(),
                );
                s.counter(
                    "oort_sink_dead_letter",
                    "Payloads handed to the dead-letter output",
                    &l,
                    m.dead_lettered.get(),
                );
                s.gauge(
                    "oort_sink_cached",
                    "Payloads in the action's cache now",
                    &l,
                    m.cached.get(),
                );
                s.counter(
                    "oort_sink_resent",
                    "Payloads delivered from the cache",
                    &l,
                    m.resent.get(),
                );
                s.counter(
                    "oort_sink_retries",
                    "Batches retried after a transient error",
                    &l,
                    m.retries.get(),
                );
                s.counter(
                    "oort_sink_traps",
                    "Sink instances replaced after a trap",
                    &l,
                    m.restarts.get(),
                );
                s.counter(
                    "oort_sink_reloads",
                    "Switches to a new build of the sink (hot reloads)",
                    &l,
                    m.reloads.get(),
                );
                s.counter(
                    "oort_sink_reload_refusals",
                    "New builds the action refused",
                    &l,
                    m.reload_refusals.get(),
                );
                s.gauge(
                    "oort_sink_swap_pause_max_us",
                    "Longest pause a hot reload caused the action, in microseconds",
                    &l,
                    m.swap_pauses().iter().max().copied().unwrap_or(0) / 1000,
                );
                s.counter(
                    "oort_sink_dropped_logs",
                    "Guest log lines dropped because the sink logged too fast",
                    &l,
                    m.dropped_logs.load(Ordering::Relaxed),
                );
            }
        }
    }
    for (status, n) in by_status {
        s.gauge(
            "oort_rules",
            "Rules by status",
            &labels([("status", status.into())]),
            n,
        );
    }
    for h in server.shared.stats() {
        let time = if h.event_time { "event" } else { "processing" };
        let l = labels([("stream", h.stream.to_string()), ("time", time.into())]);
        s.gauge(
            "oort_shared_source_rules",
            "Rules attached to the shared reading of the stream",
            &l,
            h.rules.len() as u64,
        );
        s.counter(
            "oort_shared_source_records_in",
            "Messages the shared reading received (each once, whatever the rules)",
            &l,
            h.records + h.exceptions,
        );
        s.counter(
            "oort_shared_source_records_out",
            "Rows the shared reading decoded and handed to its rules (each once)",
            &l,
            h.records,
        );
        s.counter(
            "oort_shared_source_exceptions",
            "Messages the shared reading could not decode",
            &l,
            h.exceptions,
        );
        s.gauge(
            "oort_shared_source_buffer_length",
            "Rows waiting in the fullest queue of the shared reading's rules",
            &l,
            h.queued_rows,
        );
        s.counter(
            "oort_shared_source_backpressure_wait_us",
            "Time the shared reading waited for a rule's full queue, in microseconds",
            &l,
            h.waited_us,
        );
    }
    s.gauge(
        "oort_memory_subscriptions",
        "Memory streams of running rules subscribed to the server's memory topics",
        &labels([]),
        server.bus.subscriptions() as u64,
    );
    s
}

/// The size of the last `/metrics` body: the next one is about as big.
static LAST_SIZE: AtomicUsize = AtomicUsize::new(0);

/// `GET /metrics`.
pub(super) async fn metrics(State(server): State<Arc<Server>>) -> Response {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot(&server).await));
    // The body (2 MiB with 1,000 rules) is written once, not grown by doubling.
    let mut body = String::with_capacity(LAST_SIZE.load(Ordering::Relaxed) * 9 / 8);
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &registry) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    LAST_SIZE.store(body.len(), Ordering::Relaxed);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// `GET /healthz`: the server answers.
pub(super) async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: 200 once no rule is still starting, 503 until then.
pub(super) async fn readyz(State(server): State<Arc<Server>>) -> Response {
    let registry = server.registry.lock().await;
    let starting: Vec<&String> = registry
        .rules
        .iter()
        .filter(|(_, e)| {
            e.state
                .lock()
                .is_ok_and(|s| matches!(s.phase, Some(Phase::Starting)))
        })
        .map(|(id, _)| id)
        .collect();
    if starting.is_empty() {
        (StatusCode::OK, "ready".to_string()).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("rules still starting: {starting:?}"),
        )
            .into_response()
    }
}
