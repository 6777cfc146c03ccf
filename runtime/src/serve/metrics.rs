//! `GET /metrics`: every rule's source, query and sink counters in the Prometheus text format,
//! under eKuiper's names (`kuiper_source_records_in_total{rule,type,op,op_instance}`, so its
//! dashboards keep working) and Oort's own (`oort_sink_failed_total`, reloads, cache depth,
//! the shared readings' `oort_shared_source_*{stream,time}`, ...).
//!
//! The counters live in the engine's atomics. A scrape reads them under the registry's lock
//! into flat arrays, one row of values per node, and renders each node's label set once, into
//! one buffer; the body is then written family by family straight into one string (about
//! 25,000 samples and 2 MiB with 1,000 rules), with no allocation per sample.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{Phase, Server};

/// The kinds of node a sample belongs to; each has its label set and its row of values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A rule of the registry, running or not: `{rule}`.
    Rule,
    /// A running rule's query, by rule: `{rule}`.
    Run,
    /// A source node: `{rule,type="source",op,op_instance}`.
    Source,
    /// The query node: `{rule,type="op",op="op_project",op_instance}`.
    Op,
    /// A sink node: `{rule,type="sink",op,op_instance}`.
    Sink,
    /// Rules by status: `{status}`.
    Status,
    /// A shared reading of a stream: `{stream,time}`.
    Shared,
    /// The server: no labels.
    Server,
}

const KINDS: usize = 8;

impl Kind {
    /// How many values a node of this kind has (the families that read it, by `index`).
    const fn width(self) -> usize {
        match self {
            Self::Rule | Self::Run | Self::Status | Self::Server => 1,
            Self::Source => 4,
            Self::Op => 8,
            Self::Sink => 14,
            Self::Shared => 6,
        }
    }
}

/// One metric family: its name (a counter's without `_total`, which the text adds), help and
/// type, and where its samples are: the nodes of `kind`, value `index` of each.
#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    gauge: bool,
    kind: Kind,
    index: usize,
}

const fn counter(name: &'static str, help: &'static str, kind: Kind, index: usize) -> Family {
    Family {
        name,
        help,
        gauge: false,
        kind,
        index,
    }
}

const fn gauge(name: &'static str, help: &'static str, kind: Kind, index: usize) -> Family {
    Family {
        name,
        help,
        gauge: true,
        kind,
        index,
    }
}

/// Every family, in name order (the order of the body).
static FAMILIES: &[Family] = &[
    counter(
        "kuiper_op_exceptions",
        "Rows whose evaluation failed",
        Kind::Op,
        2,
    ),
    gauge(
        "kuiper_op_process_latency_us",
        "Mean time the query spent on a row, in microseconds",
        Kind::Op,
        3,
    ),
    counter(
        "kuiper_op_records_in",
        "Rows the query received",
        Kind::Op,
        0,
    ),
    counter(
        "kuiper_op_records_out",
        "Messages the query produced",
        Kind::Op,
        1,
    ),
    counter(
        "kuiper_sink_exceptions",
        "Errors of the action",
        Kind::Sink,
        2,
    ),
    gauge(
        "kuiper_sink_process_latency_us",
        "Mean time of one call into the sink, in microseconds",
        Kind::Sink,
        3,
    ),
    counter(
        "kuiper_sink_records_in",
        "Messages the action received",
        Kind::Sink,
        0,
    ),
    counter(
        "kuiper_sink_records_out",
        "Payloads the sink accepted",
        Kind::Sink,
        1,
    ),
    counter(
        "kuiper_source_exceptions",
        "Messages the source could not decode",
        Kind::Source,
        2,
    ),
    counter(
        "kuiper_source_records_in",
        "Rows the source received",
        Kind::Source,
        0,
    ),
    counter(
        "kuiper_source_records_out",
        "Rows the source handed to the rule",
        Kind::Source,
        1,
    ),
    gauge(
        "oort_memory_subscriptions",
        "Memory streams of running rules subscribed to the server's memory topics",
        Kind::Server,
        0,
    ),
    counter(
        "oort_op_filtered",
        "Rows the WHERE clause dropped",
        Kind::Op,
        4,
    ),
    counter(
        "oort_op_late",
        "Rows that arrived after the watermark (event time)",
        Kind::Op,
        5,
    ),
    counter(
        "oort_op_rows_held_at_end",
        "Rows held by those windows and the watermark, not sent",
        Kind::Op,
        7,
    ),
    counter(
        "oort_op_windows_open_at_end",
        "Windows still open when the rule's input ended or it stopped, not sent",
        Kind::Op,
        6,
    ),
    counter(
        "oort_rule_restarts",
        "Times a failed source of the rule was started again (restartStrategy)",
        Kind::Run,
        0,
    ),
    gauge(
        "oort_rule_running",
        "1 while the rule runs, 0 when it is stopped",
        Kind::Rule,
        0,
    ),
    gauge("oort_rules", "Rules by status", Kind::Status, 0),
    counter(
        "oort_shared_source_backpressure_wait_us",
        "Time the shared reading waited for a rule's full queue, in microseconds",
        Kind::Shared,
        5,
    ),
    gauge(
        "oort_shared_source_buffer_length",
        "Rows waiting in the fullest queue of the shared reading's rules",
        Kind::Shared,
        4,
    ),
    counter(
        "oort_shared_source_exceptions",
        "Messages the shared reading could not decode",
        Kind::Shared,
        3,
    ),
    counter(
        "oort_shared_source_records_in",
        "Messages the shared reading received (each once, whatever the rules)",
        Kind::Shared,
        1,
    ),
    counter(
        "oort_shared_source_records_out",
        "Rows the shared reading decoded and handed to its rules (each once)",
        Kind::Shared,
        2,
    ),
    gauge(
        "oort_shared_source_rules",
        "Rules attached to the shared reading of the stream",
        Kind::Shared,
        0,
    ),
    gauge(
        "oort_sink_cached",
        "Payloads in the action's cache now",
        Kind::Sink,
        6,
    ),
    counter(
        "oort_sink_dead_letter",
        "Payloads handed to the dead-letter output",
        Kind::Sink,
        5,
    ),
    counter(
        "oort_sink_dropped_logs",
        "Guest log lines dropped because the sink logged too fast",
        Kind::Sink,
        13,
    ),
    counter(
        "oort_sink_failed",
        "Payloads lost and counted",
        Kind::Sink,
        4,
    ),
    counter(
        "oort_sink_reload_refusals",
        "New builds the action refused",
        Kind::Sink,
        11,
    ),
    counter(
        "oort_sink_reloads",
        "Switches to a new build of the sink (hot reloads)",
        Kind::Sink,
        10,
    ),
    counter(
        "oort_sink_resent",
        "Payloads delivered from the cache",
        Kind::Sink,
        7,
    ),
    counter(
        "oort_sink_retries",
        "Batches retried after a transient error",
        Kind::Sink,
        8,
    ),
    gauge(
        "oort_sink_swap_pause_max_us",
        "Longest pause a hot reload caused the action, in microseconds",
        Kind::Sink,
        12,
    ),
    counter(
        "oort_sink_traps",
        "Sink instances replaced after a trap",
        Kind::Sink,
        9,
    ),
    counter(
        "oort_source_acks_unsent_at_stop",
        "Acknowledgements a stop could not send to the MQTT broker within its limit",
        Kind::Source,
        3,
    ),
];

/// The nodes of one kind read at a scrape: each one's label set (a range of
/// [`Scrape::labels`]) and its row of values.
#[derive(Debug, Default)]
struct Nodes {
    labels: Vec<Range<usize>>,
    values: Vec<u64>,
    /// The length of all their label sets.
    label_bytes: usize,
}

/// What one scrape read: every node's rendered label set in one buffer, and its values.
#[derive(Debug)]
struct Scrape {
    labels: String,
    nodes: [Nodes; KINDS],
}

impl Scrape {
    /// An empty scrape with room for the nodes of `rules` rules of one source and one action
    /// each, so that the buffers are allocated once, not grown by doubling.
    fn new(rules: usize) -> Self {
        Self {
            // The four label sets of a rule take some 250 bytes with short ids.
            labels: String::with_capacity(rules * 256),
            nodes: std::array::from_fn(|kind| {
                // The kinds of a rule's nodes come first.
                let nodes = if kind <= Kind::Sink as usize {
                    rules
                } else {
                    0
                };
                Nodes {
                    labels: Vec::with_capacity(nodes),
                    values: Vec::new(),
                    label_bytes: 0,
                }
            }),
        }
    }

    /// Renders a label set (`{k="v",...}`, values escaped; nothing for none) into the buffer.
    fn labels(&mut self, pairs: &[(&str, &str)]) -> Range<usize> {
        let start = self.labels.len();
        if !pairs.is_empty() {
            self.labels.push('{');
            for (i, (key, value)) in pairs.iter().enumerate() {
                if i > 0 {
                    self.labels.push(',');
                }
                self.labels.push_str(key);
                self.labels.push_str("=\"");
                escape_label_value(&mut self.labels, value);
                self.labels.push('"');
            }
            self.labels.push('}');
        }
        start..self.labels.len()
    }

    /// The label set of a node of a rule's topology.
    fn node(&mut self, rule: &str, kind: &str, op: std::fmt::Arguments<'_>) -> Range<usize> {
        let start = self.labels.len();
        self.labels.push_str("{rule=\"");
        escape_label_value(&mut self.labels, rule);
        self.labels.push_str("\",type=\"");
        self.labels.push_str(kind);
        self.labels.push_str("\",op=\"");
        let op_start = self.labels.len();
        let _ = self.labels.write_fmt(op);
        if self.labels[op_start..].contains(['\\', '"', '\n']) {
            let op = self.labels.split_off(op_start);
            escape_label_value(&mut self.labels, &op);
        }
        self.labels.push_str("\",op_instance=\"0\"}");
        start..self.labels.len()
    }

    fn push<const N: usize>(&mut self, kind: Kind, labels: Range<usize>, values: [u64; N]) {
        debug_assert_eq!(N, kind.width(), "{kind:?}");
        let nodes = &mut self.nodes[kind as usize];
        if nodes.values.capacity() == 0 {
            nodes
                .values
                .reserve_exact(nodes.labels.capacity().max(1) * N);
        }
        nodes.label_bytes += labels.len();
        nodes.labels.push(labels);
        nodes.values.extend_from_slice(&values);
    }

    /// The body: each family's help, type and samples, then `# EOF`.
    fn render(&self) -> String {
        let mut body = String::with_capacity(self.size_bound());
        let mut digits = itoa::Buffer::new();
        for family in FAMILIES {
            let nodes = &self.nodes[family.kind as usize];
            if nodes.labels.is_empty() {
                // A family shows once it has a sample (no rule yet, no shared reading).
                continue;
            }
            let width = family.kind.width();
            body.push_str("# HELP ");
            body.push_str(family.name);
            body.push(' ');
            body.push_str(family.help);
            body.push_str("\n# TYPE ");
            body.push_str(family.name);
            body.push_str(if family.gauge {
                " gauge\n"
            } else {
                " counter\n"
            });
            for (node, labels) in nodes.labels.iter().enumerate() {
                let value = nodes.values[node * width + family.index];
                body.push_str(family.name);
                if !family.gauge {
                    body.push_str("_total");
                }
                body.push_str(&self.labels[labels.clone()]);
                body.push(' ');
                body.push_str(if family.gauge {
                    // Gauges are signed: a value past `i64::MAX` shows as its maximum.
                    digits.format(value.min(i64::MAX as u64))
                } else {
                    digits.format(value)
                });
                body.push('\n');
            }
        }
        body.push_str("# EOF\n");
        debug_assert!(body.len() <= self.size_bound());
        body
    }

    /// The most bytes the body can take (each value taken as 20 digits): it is allocated once.
    fn size_bound(&self) -> usize {
        let samples = FAMILIES.iter().map(|family| {
            let nodes = &self.nodes[family.kind as usize];
            if nodes.labels.is_empty() {
                return 0;
            }
            // `# HELP name help\n# TYPE name counter\n`
            let header = 2 * family.name.len() + family.help.len() + 25;
            let line = family.name.len() + "_total".len() + " \n".len() + 20;
            header + nodes.labels.len() * line + nodes.label_bytes
        });
        samples.sum::<usize>() + "# EOF\n".len()
    }
}

/// A label value as the text format writes it: `\`, `"` and line feeds escaped.
fn escape_label_value(out: &mut String, value: &str) {
    let mut rest = value;
    while let Some(at) = rest.find(['\\', '"', '\n']) {
        out.push_str(&rest[..at]);
        out.push_str(match rest.as_bytes()[at] {
            b'\\' => "\\\\",
            b'"' => "\\\"",
            _ => "\\n",
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
}

/// Reads every counter of the server (the registry is locked meanwhile).
async fn scrape(server: &Server) -> Scrape {
    let registry = server.registry.lock().await;
    let mut s = Scrape::new(registry.rules.len());
    let mut by_status: BTreeMap<&str, u64> = BTreeMap::new();
    for (id, entry) in &registry.rules {
        let Ok(state) = entry.state.lock() else {
            continue;
        };
        let running = matches!(state.phase, Some(Phase::Running));
        let rule_label = s.labels(&[("rule", id.as_str())]);
        *by_status
            .entry(if running { "running" } else { "stopped" })
            .or_default() += 1;
        s.push(Kind::Rule, rule_label.clone(), [u64::from(running)]);
        let Some((reports, _)) = &state.live else {
            continue;
        };
        for r in reports {
            for stream in r.stream.split(", ") {
                let l = s.node(id, "source", format_args!("source_{stream}"));
                let src = &r.source;
                let out = src.records_out.get();
                let exceptions = src.exceptions.total();
                let unsent = src.acks_unsent_at_stop.get();
                s.push(Kind::Source, l, [out + exceptions, out, exceptions, unsent]);
            }
            let l = s.node(id, "op", format_args!("op_project"));
            let q = &r.rule;
            let records_in = q.records_in.get();
            s.push(
                Kind::Op,
                l,
                [
                    records_in,
                    q.records_out.get(),
                    q.exceptions.total(),
                    q.process_time_us.get() / records_in.max(1),
                    q.filtered.get(),
                    q.late.get(),
                    q.windows_open_at_end.get(),
                    q.rows_held_at_end.get(),
                ],
            );
            s.push(Kind::Run, rule_label.clone(), [q.restarts.get()]);
            for a in &r.actions {
                let l = s.node(id, "sink", format_args!("sink_{}", a.name));
                let m = &a.metrics;
                s.push(
                    Kind::Sink,
                    l,
                    [
                        m.records_in.get(),
                        m.records_out.get(),
                        m.exceptions.total(),
                        m.collect_time_ns.get() / 1000 / m.batches.get().max(1),
                        m.failed.get(),
                        m.dead_lettered.get(),
                        m.cached.get(),
                        m.resent.get(),
                        m.retries.get(),
                        m.restarts.get(),
                        m.reloads.get(),
                        m.reload_refusals.get(),
                        m.longest_swap_pause_ns() / 1000,
                        m.dropped_logs.load(Ordering::Relaxed),
                    ],
                );
            }
        }
    }
    drop(registry);
    for (status, n) in by_status {
        let l = s.labels(&[("status", status)]);
        s.push(Kind::Status, l, [n]);
    }
    for h in server.shared.stats() {
        let time = if h.event_time { "event" } else { "processing" };
        let l = s.labels(&[("stream", &h.stream), ("time", time)]);
        s.push(
            Kind::Shared,
            l,
            [
                h.rules.len() as u64,
                h.records + h.exceptions,
                h.records,
                h.exceptions,
                h.queued_rows,
                h.waited_us,
            ],
        );
    }
    s.push(Kind::Server, 0..0, [server.bus.subscriptions() as u64]);
    s
}

/// `GET /metrics`.
pub(super) async fn metrics(State(server): State<Arc<Server>>) -> Response {
    let body = scrape(&server).await.render();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_in_name_order_and_read_distinct_values_of_their_node() {
        for pair in FAMILIES.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} before {}",
                pair[0].name,
                pair[1].name
            );
        }
        for (i, f) in FAMILIES.iter().enumerate() {
            assert!(f.index < f.kind.width(), "{}", f.name);
            assert!(
                !FAMILIES[..i]
                    .iter()
                    .any(|g| g.kind == f.kind && g.index == f.index),
                "{} reads a value another family reads",
                f.name
            );
        }
    }

    #[test]
    fn the_body_is_openmetrics_text_with_escaped_label_values() {
        let mut s = Scrape::new(1);
        let rule = s.labels(&[("rule", r#"a"b\c"#)]);
        s.push(Kind::Rule, rule, [1]);
        let sink = s.node("r\n1", "sink", format_args!("sink_{}", "file_0"));
        let mut values = [0; 14];
        values[1] = 7;
        values[6] = u64::MAX;
        s.push(Kind::Sink, sink, values);
        s.push(Kind::Server, 0..0, [3]);
        let body = s.render();
        for line in [
            "# HELP kuiper_sink_records_out Payloads the sink accepted",
            "# TYPE kuiper_sink_records_out counter",
            r#"kuiper_sink_records_out_total{rule="r\n1",type="sink",op="sink_file_0",op_instance="0"} 7"#,
            "# TYPE oort_sink_cached gauge",
            r#"oort_sink_cached{rule="r\n1",type="sink",op="sink_file_0",op_instance="0"} 9223372036854775807"#,
            r#"oort_rule_running{rule="a\"b\\c"} 1"#,
            "oort_memory_subscriptions 3",
        ] {
            assert!(
                body.lines().any(|l| l == line),
                "missing `{line}` in:\n{body}"
            );
        }
        // Families without a sample (no source, query or shared reading here) are left out.
        assert!(!body.contains("kuiper_source"), "{body}");
        assert!(!body.contains("oort_shared_source"), "{body}");
        assert!(body.ends_with("\n# EOF\n"), "{body}");
        assert_eq!(body.matches("# HELP").count(), 14 + 2);
    }
}
