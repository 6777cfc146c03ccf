//! The sinks an action can deliver to: the built-in native ones (`log`, `nop`, `memory`) and wasm
//! components. One enum, so the delivery loop calls them without dynamic dispatch.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::Deserialize;
use serde_json::{Map, Value as Json};
use tokio::sync::mpsc;

use super::batch::Batch;
use super::mqtt::{MqttSink, MqttSpec};
use super::props::{COMMON_KEYS, decode};
use super::sequence::Sequencer;
use super::swap::{PauseTime, retire, timed};
use crate::host::bindings::WitContext;
use crate::host::{CallFailure, Grants, InstanceTag, Plugin, SinkHost, WasmInstance};
use crate::metrics::ActionMetrics;
use crate::reload::{Reloader, Subscriber, Swap};
use crate::source::MemoryBus;
use crate::source::memory::{Published, PublisherGuard};
use crate::template::Template;
use oort_value::Row;

/// The built-in sinks.
pub const BUILTINS: &[&str] = &["log", "nop", "memory", "mqtt"];

/// Props of the `log` sink (none of its own).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogProps {}

/// Props of the `nop` sink.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NopProps {
    /// Log each payload at debug level.
    #[serde(default)]
    log: bool,
}

/// Props of the `memory` sink.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemoryProps {
    /// The topic to publish to.
    topic: String,
    /// `table`: also keep the latest row of each `key` for lookup tables over the topic.
    #[serde(default)]
    table: bool,
    /// `key`: the field whose value keys the table's rows.
    #[serde(default)]
    key: Option<String>,
    /// `rowkindField`: the field saying `insert`, `update` (the default) or `delete`.
    #[serde(default, rename = "rowkindField")]
    rowkind_field: Option<String>,
}

/// How a memory action with `table: true` keys its rows.
#[derive(Debug, Clone)]
pub struct MemoryTable {
    key: String,
    rowkind_field: Option<String>,
}

impl MemoryTable {
    /// The changes one payload (a row, or a list of rows) makes: each key, and its row
    /// (`None`: deleted).
    fn changes(
        &self,
        payload: &[u8],
        ts: i64,
    ) -> Result<Vec<(oort_sql::LookupKey, Option<Row>)>, String> {
        let json: serde_json::Value = serde_json::from_slice(payload)
            .map_err(|e| format!("memory table: the payload is not JSON: {e}"))?;
        let rows = match json {
            serde_json::Value::Array(rows) => rows,
            row => vec![row],
        };
        rows.into_iter()
            .map(|row| {
                let serde_json::Value::Object(map) = row else {
                    return Err("memory table: a row is not a JSON object".to_string());
                };
                let key = map
                    .get(&self.key)
                    .and_then(|k| oort_sql::LookupKey::of(&crate::value::Value::from_json(k.clone())))
                    .ok_or_else(|| format!("memory table: a row has no key field `{}`", self.key))?;
                let kind = match &self.rowkind_field {
                    Some(field) => match map.get(field) {
                        None | Some(serde_json::Value::Null) => "update".to_string(),
                        Some(serde_json::Value::String(s)) => s.to_ascii_lowercase(),
                        Some(other) => {
                            return Err(format!(
                                "memory table: `{field}` is {other}, expected insert, update or delete"
                            ));
                        }
                    },
                    None => "update".to_string(),
                };
                match kind.as_str() {
                    "delete" => Ok((key, None)),
                    "insert" | "update" | "upsert" => {
                        let pairs = map
                            .into_iter()
                            .map(|(k, v)| (Arc::from(k), crate::value::Value::from_json(v)))
                            .collect();
                        Ok((key, Some(Row::from_pairs(pairs, ts))))
                    }
                    other => Err(format!(
                        "memory table: row kind `{other}`, expected insert, update or delete"
                    )),
                }
            })
            .collect()
    }
}

/// Prints each payload to the log: `sink result for rule <id>: <payload>`, as eKuiper does.
#[derive(Debug)]
pub struct LogSink {
    rule: Arc<str>,
    action: Arc<str>,
}

/// Accepts and discards everything (for benchmarks and dry runs).
#[derive(Debug)]
pub struct NopSink {
    log: bool,
}

/// Publishes each payload to an in-process topic that memory streams read.
#[derive(Debug)]
pub struct MemorySink {
    topic: MemoryTopic,
    table: Option<MemoryTable>,
    bus: Arc<MemoryBus>,
    _guard: Option<Arc<PublisherGuard>>,
}

/// The memory sink's `topic`: fixed, or a data template evaluated for each message (as
/// eKuiper's dynamic `topic`).
#[derive(Debug, Clone)]
pub enum MemoryTopic {
    /// The same topic for every message.
    Fixed(String),
    /// A template over each message (a window result gives its first row).
    Template(Arc<Template>),
}

impl MemoryTopic {
    fn parse(topic: &str) -> Result<Self, String> {
        if topic.is_empty() {
            return Err("`topic` must not be empty".into());
        }
        if topic.contains("{{") {
            Template::parse(topic)
                .map(|t| Self::Template(Arc::new(t)))
                .map_err(|e| format!("`topic`: {e}"))
        } else {
            Ok(Self::Fixed(topic.to_string()))
        }
    }

    /// The topic of one payload.
    fn of(&self, payload: &[u8]) -> Result<std::borrow::Cow<'_, str>, String> {
        match self {
            Self::Fixed(topic) => Ok(std::borrow::Cow::Borrowed(topic)),
            Self::Template(t) => {
                let topic = render_over(t, payload)?;
                if topic.is_empty() {
                    return Err(format!(
                        "the `topic` template {:?} gave an empty topic",
                        t.source()
                    ));
                }
                Ok(std::borrow::Cow::Owned(topic))
            }
        }
    }

    fn text(&self) -> &str {
        match self {
            Self::Fixed(topic) => topic,
            Self::Template(t) => t.source(),
        }
    }
}

/// Renders `template` over one payload (a JSON message; a window result's list gives its first
/// row), as the dynamic props of eKuiper's sinks are evaluated.
pub fn render_over(template: &Template, payload: &[u8]) -> Result<String, String> {
    let value = crate::json::parse_value(payload).map_err(|e| {
        format!(
            "the template {:?} needs a JSON message: {e}",
            template.source()
        )
    })?;
    let dot = match &value {
        crate::value::Value::Array(items) if !items.is_empty() => items[0].clone(),
        _ => value,
    };
    template
        .render_to_string(&dot)
        .map_err(|e| format!("template {:?}: {e}", template.source()))
}

/// A wasm component sink, with its current instance (replaced after a trap).
pub struct WasmSink {
    host: SinkHost,
    plugin: Arc<Plugin>,
    grants: Arc<Grants>,
    props: Arc<str>,
    context: WitContext,
    tag: InstanceTag,
    instance: Option<WasmInstance>,
    metrics: Arc<ActionMetrics>,
    /// The next instance's `generation` (shared with the reloader, which makes instances too).
    generation: Arc<AtomicU32>,
    /// New builds prepared by the reloader, taken at a batch boundary.
    swaps: Option<mpsc::Receiver<Swap>>,
    /// The action's batch numbering: what `open` tells an instance.
    sequencer: Arc<Sequencer>,
    /// Set while the instance that started the action is parked (see [`WasmSpec::park`]): the
    /// `generation` it had, which the instance made at the first batch takes over.
    parked: Option<u32>,
    /// A new build received while the action was idle, switched to outside the wait (so that a
    /// row arriving meanwhile cannot cut the switch short).
    ready: Option<Swap>,
    /// The last switch, logged and recorded once the new build took its first batch (at once
    /// when the action was idle), so that its bookkeeping does not lengthen the pause.
    report: Option<SwapReport>,
}

/// A switch to a new build, not yet logged.
struct SwapReport {
    /// The build switched from (retired once the report is written).
    from: Arc<Plugin>,
    /// How long the action paused.
    pause: PauseTime,
}

impl std::fmt::Debug for WasmSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmSink")
            .field("plugin", &self.plugin)
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

/// Everything needed to make a wasm sink's instances.
#[derive(Clone)]
pub struct WasmSpec {
    /// The engine.
    pub host: SinkHost,
    /// The loaded component.
    pub plugin: Arc<Plugin>,
    /// What its instances may reach.
    pub grants: Arc<Grants>,
    /// The sink's own props as a JSON object text.
    pub props: Arc<str>,
    /// The sink's own props as the rule wrote them (before grant paths were resolved).
    pub raw_props: Map<String, Json>,
    /// The rule file's folder.
    pub base_dir: PathBuf,
    /// Set when modules are watched: instances register to receive new builds.
    pub reloader: Option<Arc<Reloader>>,
    /// The props that hold a template (dynamic props), evaluated for each message.
    pub dynamic: DynamicProps,
    /// What the values of templated props that grants point at must stay within.
    pub checks: GrantChecks,
    /// Park the instance until the first batch: it is created, configured and opened at start
    /// (so the errors of those steps are reported when the rule starts), then closed and
    /// dropped; the first batch makes the instance that delivers, with the same `generation`.
    /// An idle action then holds no store, no instance, no fiber stack and no linear memory
    /// (`oort serve`, where most of a thousand rules may wait for their first row).
    pub park: bool,
}

/// An action's templated props: each prop's name and its parsed template.
pub type DynamicProps = Vec<(String, Arc<Template>)>;

/// A template in a prop of a wasm sink: parsed when the prop is one the sink's manifest lists in
/// `dynamicProps`, refused otherwise. An object prop the manifest lists (the rest sink's
/// `headers`) may hold templates in its string members: each is its own templated prop, named
/// `<prop>.<member>` (`headers.X-Device`). Returns the templated props, in name order.
pub fn dynamic_props(
    props: &Map<String, Json>,
    dynamic: &[String],
) -> Result<DynamicProps, (String, String)> {
    let mut out = Vec::new();
    for (name, value) in props {
        let is_dynamic = dynamic.iter().any(|d| d == name);
        let templated: Vec<(String, &str)> = match value {
            Json::String(text) if text.contains("{{") => vec![(name.clone(), text.as_str())],
            Json::Object(members) if is_dynamic => members
                .iter()
                .filter_map(|(key, v)| {
                    let text = v.as_str().unwrap_or_default();
                    (v.to_string().contains("{{")).then(|| (format!("{name}.{key}"), text))
                })
                .collect(),
            other if other.to_string().contains("{{") => vec![(name.clone(), "")],
            _ => continue,
        };
        for (prop, text) in templated {
            if !is_dynamic || text.is_empty() {
                let allowed = if dynamic.is_empty() {
                    "this sink has no dynamic props".to_string()
                } else {
                    format!("its dynamic props are: {}", dynamic.join(", "))
                };
                return Err((
                    prop,
                    format!(
                        "holds a template (`{{{{...}}}}`), but this prop is not dynamic: it is \
                         passed to the sink as written ({allowed})"
                    ),
                ));
            }
            let template = Template::parse(text).map_err(|e| (prop.clone(), e.to_string()))?;
            out.push((prop, Arc::new(template)));
        }
    }
    Ok(out)
}

/// What the value of a templated prop that a grant points at must stay within, checked by the
/// host for each message before the sink sees it: a message whose value is outside is
/// dead-lettered on its own, with the reason, and the rest of its batch goes on.
#[derive(Debug, Clone)]
pub enum GrantCheck {
    /// A URL (`grants.http`): its scheme and authority must be granted.
    Http(Vec<crate::host::HttpGrant>),
    /// A file path (`grants.files` with a templated path): a file directly in this folder.
    Folder(String),
}

impl GrantCheck {
    /// `Err` with the reason when `value` of prop `prop` is outside.
    pub fn check(&self, prop: &str, value: &str) -> Result<(), String> {
        match self {
            Self::Http(grants) => {
                let granted = crate::host::HttpGrant::parse(value)
                    .is_ok_and(|u| grants.iter().any(|g| g.allows(&u.scheme, &u.authority)));
                if granted {
                    return Ok(());
                }
                let list = grants
                    .iter()
                    .map(|g| format!("{}://{}", g.scheme, g.authority))
                    .collect::<Vec<_>>();
                Err(format!(
                    "prop `{prop}` evaluates to {value:?}, outside the action's grant ({})",
                    if list.is_empty() {
                        "no URL is granted: add them to the action's `grants.http`".to_string()
                    } else {
                        format!("granted: {}", list.join(", "))
                    }
                ))
            }
            Self::Folder(dir) => {
                let name = value
                    .strip_prefix(dir.as_str())
                    .and_then(|rest| rest.strip_prefix('/'));
                match name {
                    Some(n) if !n.is_empty() && !n.contains('/') && n != "." && n != ".." => Ok(()),
                    _ => Err(format!(
                        "prop `{prop}` evaluates to {value:?}, which is not a file directly in \
                         {dir} (the folder its grant covers)"
                    )),
                }
            }
        }
    }
}

/// The grant checks of an action's templated props, by prop name.
pub type GrantChecks = Vec<(String, GrantCheck)>;

/// One sink instance of an action.
#[derive(Debug)]
pub enum Connector {
    /// `log`.
    Log(LogSink),
    /// `nop`.
    Nop(NopSink),
    /// `memory`.
    Memory(MemorySink),
    /// `mqtt`.
    Mqtt(Box<MqttSink>),
    /// A wasm component.
    Wasm(Box<WasmSink>),
    /// A sink whose module could not be loaded: every batch fails, with the reason.
    Unavailable(Arc<str>),
    /// A scripted sink, for the pipeline's tests.
    #[cfg(test)]
    Fake(Box<super::fake::FakeSink>),
}

/// How to make an action's connectors.
#[derive(Clone)]
pub enum ConnectorSpec {
    /// `log`.
    Log,
    /// `nop`.
    Nop {
        /// Log payloads at debug level.
        log: bool,
    },
    /// `memory`.
    Memory {
        /// The topic.
        topic: MemoryTopic,
        /// With `table: true`: how its rows are keyed.
        table: Option<MemoryTable>,
        /// The bus.
        bus: Arc<MemoryBus>,
        /// Registered once per action, before sources start (for a fixed topic).
        guard: Option<Arc<PublisherGuard>>,
    },
    /// `mqtt`: its checked props, and the rule's folder (relative certificate paths).
    Mqtt(MqttSpec, PathBuf),
    /// A wasm component.
    Wasm(WasmSpec),
    /// A wasm component whose module could not be loaded, and why.
    Unavailable(String),
}

impl ConnectorSpec {
    /// Whether the sink gets each batch's sequence number and can skip one it wrote before
    /// (a wasm sink built against `oort:sink@0.2.0`, the built-in `mqtt` sink): under `qos: 2`
    /// its batches must be cut again where they were after a restart.
    pub fn numbers_batches(&self) -> bool {
        match self {
            Self::Wasm(spec) => spec.plugin.version == crate::host::WitVersion::V0_2,
            Self::Mqtt(..) => true,
            Self::Log | Self::Nop { .. } | Self::Memory { .. } | Self::Unavailable(_) => false,
        }
    }
}

impl std::fmt::Debug for ConnectorSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Log => f.write_str("Log"),
            Self::Nop { .. } => f.write_str("Nop"),
            Self::Memory { topic, .. } => write!(f, "Memory({})", topic.text()),
            Self::Mqtt(spec, _) => write!(f, "{spec:?}"),
            Self::Wasm(spec) => write!(f, "Wasm({})", spec.plugin.path.display()),
            Self::Unavailable(reason) => write!(f, "Unavailable({reason})"),
        }
    }
}

impl ConnectorSpec {
    /// The spec of built-in sink `name` with its own props; `None` if `name` is not built in.
    pub fn builtin(
        name: &str,
        props: &Map<String, Json>,
        bus: &Arc<MemoryBus>,
        base_dir: &std::path::Path,
    ) -> Option<Result<Self, String>> {
        Some(match name {
            "log" => decode::<LogProps>(props, COMMON_KEYS)
                .map(|_| Self::Log)
                .map_err(|e| e.to_string()),
            "nop" => decode::<NopProps>(props, COMMON_KEYS)
                .map(|p| Self::Nop { log: p.log })
                .map_err(|e| e.to_string()),
            "memory" => decode::<MemoryProps>(props, COMMON_KEYS)
                .map_err(|e| e.to_string())
                .and_then(|p| {
                    let topic = MemoryTopic::parse(&p.topic)?;
                    let table = match (p.table, p.key) {
                        (true, Some(key)) => Some(MemoryTable {
                            key,
                            rowkind_field: p.rowkind_field,
                        }),
                        (true, None) => return Err("`table: true` needs `key`".to_string()),
                        (false, _) => None,
                    };
                    // A fixed topic is registered as fed by this action before sources start;
                    // a templated one cannot be known in advance.
                    let guard = match &topic {
                        MemoryTopic::Fixed(t) => Some(Arc::new(bus.publisher(t))),
                        MemoryTopic::Template(_) => None,
                    };
                    Ok(Self::Memory {
                        guard,
                        topic,
                        table,
                        bus: Arc::clone(bus),
                    })
                }),
            "mqtt" => MqttSpec::parse(props).map(|spec| Self::Mqtt(spec, base_dir.to_path_buf())),
            _ => return None,
        })
    }

    /// Makes one connector; wasm instances are created, configured and opened here.
    pub async fn start(
        &self,
        context: WitContext,
        tag: InstanceTag,
        metrics: &Arc<ActionMetrics>,
        sequencer: &Arc<Sequencer>,
    ) -> Result<Connector, (Phase, CallFailure)> {
        Ok(match self {
            Self::Log => Connector::Log(LogSink {
                rule: Arc::clone(&tag.rule),
                action: Arc::clone(&tag.action),
            }),
            Self::Nop { log } => Connector::Nop(NopSink { log: *log }),
            Self::Memory {
                topic,
                table,
                bus,
                guard,
            } => Connector::Memory(MemorySink {
                topic: topic.clone(),
                table: table.clone(),
                bus: Arc::clone(bus),
                _guard: guard.clone(),
            }),
            Self::Mqtt(spec, base_dir) => {
                let what = format!("{}-{}-{}", tag.rule, tag.action, tag.instance);
                Connector::Mqtt(Box::new(
                    spec.start(&what, base_dir).map_err(|e| (Phase::Open, e))?,
                ))
            }
            Self::Wasm(spec) => {
                let generation = Arc::new(AtomicU32::new(0));
                let swaps = match &spec.reloader {
                    Some(reloader) => {
                        let (tx, rx) = mpsc::channel(1);
                        let subscriber = Subscriber {
                            tx,
                            context: context.clone(),
                            tag: tag.clone(),
                            generation: Arc::clone(&generation),
                            raw_props: spec.raw_props.clone(),
                            base_dir: spec.base_dir.clone(),
                            metrics: Arc::clone(metrics),
                            limits: spec.grants.limits,
                            sequencer: Arc::clone(sequencer),
                        };
                        reloader.subscribe(&spec.plugin, subscriber).await;
                        Some(rx)
                    }
                    None => None,
                };
                let mut sink = WasmSink {
                    host: spec.host.clone(),
                    plugin: Arc::clone(&spec.plugin),
                    grants: Arc::clone(&spec.grants),
                    props: Arc::clone(&spec.props),
                    context,
                    tag,
                    instance: None,
                    metrics: Arc::clone(metrics),
                    generation,
                    swaps,
                    sequencer: Arc::clone(sequencer),
                    parked: None,
                    ready: None,
                    report: None,
                };
                let first = sink.generation.fetch_add(1, Ordering::Relaxed);
                sink.parked = Some(first);
                match sink.ensure_instance(true).await {
                    Ok(()) if spec.park => sink.park(first).await,
                    Ok(()) => {}
                    // Wrong props, or the target refuses the sink for good: the rule cannot
                    // start.
                    Err((
                        phase,
                        failure @ (CallFailure::InvalidConfig(_) | CallFailure::Rejected(_)),
                    )) => return Err((phase, failure)),
                    // A trap (a loop, a panic, a memory bomb) or a target that is down: the
                    // action starts without a live instance and every batch tries again (the
                    // outcome rules then retry, cache or dead-letter it). The rule goes on.
                    Err((phase, failure)) => {
                        tracing::error!(
                            rule = %sink.tag.rule,
                            action = %sink.tag.action,
                            instance = sink.tag.instance,
                            "the sink failed to start ({phase}): {failure}; each batch will try a fresh instance"
                        );
                        metrics
                            .exceptions
                            .record(format!("start: {phase} failed: {failure}"));
                    }
                }
                metrics.set_version(&sink.plugin.hash, sink.plugin.loaded_at);
                tracing::info!(
                    rule = %sink.tag.rule,
                    action = %sink.tag.action,
                    instance = sink.tag.instance,
                    module = %sink.plugin.path.display(),
                    version = %sink.plugin.hash,
                    cache = ?sink.plugin.cache,
                    "sink instance started"
                );
                Connector::Wasm(Box::new(sink))
            }
            Self::Unavailable(reason) => Connector::Unavailable(Arc::from(reason.as_str())),
        })
    }
}

/// A lifecycle phase, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Creating the instance.
    Instantiate,
    /// `configure`.
    Configure,
    /// `open`.
    Open,
    /// `collect`.
    Collect,
    /// `close`.
    Close,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Instantiate => "instantiate",
            Self::Configure => "configure",
            Self::Open => "open",
            Self::Collect => "collect",
            Self::Close => "close",
        })
    }
}

impl WasmSink {
    /// Makes sure a live instance exists: creates, configures and opens one if needed.
    async fn ensure_instance(&mut self, open: bool) -> Result<(), (Phase, CallFailure)> {
        if self.instance.as_ref().is_some_and(|i| !i.is_poisoned()) {
            return Ok(());
        }
        self.instance = None;
        let mut tag = self.tag.clone();
        tag.dropped_logs = Arc::clone(&self.metrics.dropped_logs);
        let mut instance = self
            .host
            .instantiate(&self.plugin, tag, &self.grants)
            .await
            .map_err(|e| (Phase::Instantiate, e))?;
        let mut context = self.context.clone();
        // The instance that takes over from a parked one is, to the sink, the same start of the
        // action: it gets its generation (a file sink starts its files afresh only in the first).
        // The action's first instance takes the generation set aside for it the same way.
        context.generation = match self.parked.take() {
            Some(generation) => generation,
            None => self.generation.fetch_add(1, Ordering::Relaxed),
        };
        instance
            .configure(&context, &self.props)
            .await
            .map_err(|e| (Phase::Configure, e))?;
        if open {
            instance
                .open(self.sequencer.for_open())
                .await
                .map_err(|e| (Phase::Open, e))?;
        }
        self.instance = Some(instance);
        Ok(())
    }

    /// Closes and drops the instance that started the action (it has delivered nothing): the
    /// first batch makes the next one. A failed close is logged and counted; the action goes on,
    /// as after any failed start.
    async fn park(&mut self, generation: u32) {
        let Some(mut instance) = self.instance.take() else {
            return;
        };
        self.parked = Some(generation);
        if let Err(failure) = instance.close().await {
            tracing::error!(
                rule = %self.tag.rule,
                action = %self.tag.action,
                instance = self.tag.instance,
                "closing the sink's starting instance failed: {failure}"
            );
            self.metrics
                .exceptions
                .record(format!("start: close failed: {failure}"));
        }
    }

    /// Switches to a new build prepared by the reloader: the old instance is closed (it
    /// flushes; its writes end before the new build's first `collect`), the new one takes the
    /// next batch. The pause this makes is timed; the old instance is freed on the reaper thread
    /// and the switch is logged by [`WasmSink::report_swap`], both after the pause.
    async fn apply(&mut self, swap: Swap) {
        self.report_swap();
        let (from, pause) = timed(async {
            // A parked action's next instance is the new build's, which has a generation of
            // its own.
            self.parked = None;
            let mut old = self.instance.take();
            if let Some(instance) = old.as_mut()
                && !instance.is_poisoned()
                && let Err(failure) = instance.close().await
            {
                tracing::error!(action = %self.tag.action, "closing the previous build failed: {failure}");
                self.metrics
                    .exceptions
                    .record(format!("close of the previous build failed: {failure}"));
            }
            let from = std::mem::replace(&mut self.plugin, swap.plugin);
            self.instance = Some(swap.instance);
            let retired = (
                old,
                std::mem::replace(&mut self.grants, swap.grants),
                std::mem::replace(&mut self.props, swap.props),
            );
            retire(retired);
            self.metrics
                .set_version(&self.plugin.hash, self.plugin.loaded_at);
            self.metrics.reloads.add(1);
            from
        })
        .await;
        self.report = Some(SwapReport { from, pause });
    }

    /// Logs and records the last switch, if not done yet (see [`WasmSink::apply`]).
    fn report_swap(&mut self) {
        let Some(SwapReport { from, pause }) = self.report.take() else {
            return;
        };
        let us = |d: std::time::Duration| d.as_micros() as u64;
        self.metrics.record_swap_pause(pause.wall);
        self.metrics.reload_history.push(crate::metrics::Reload {
            at: crate::metrics::now_rfc3339(),
            instance: self.tag.instance,
            from: from.hash.clone(),
            to: self.plugin.hash.clone(),
            pause_us: Some(us(pause.wall)),
            refused: None,
        });
        tracing::info!(
            rule = %self.tag.rule,
            action = %self.tag.action,
            instance = self.tag.instance,
            from = %from.hash,
            to = %self.plugin.hash,
            pause_us = us(pause.wall),
            cpu_us = us(pause.cpu),
            descheduled_us = us(pause.descheduled),
            waited_us = us(pause.waited),
            "sink now runs the new build"
        );
        // The last action to leave a build holds its compiled code: unmapped off the path too.
        retire(from);
    }

    /// Takes a waiting new build, if there is one.
    fn waiting_swap(&mut self) -> Option<Swap> {
        self.ready
            .take()
            .or_else(|| self.swaps.as_mut().and_then(|rx| rx.try_recv().ok()))
    }

    /// Creates an instance and calls `configure` only (for `oort validate`).
    pub async fn validate(
        spec: &WasmSpec,
        context: WitContext,
        tag: InstanceTag,
    ) -> Result<(), (Phase, CallFailure)> {
        let mut instance = spec
            .host
            .instantiate(&spec.plugin, tag, &spec.grants)
            .await
            .map_err(|e| (Phase::Instantiate, e))?;
        instance
            .configure(&context, &spec.props)
            .await
            .map_err(|e| (Phase::Configure, e))
    }
}

impl Connector {
    /// Delivers one batch. For a wasm sink whose instance trapped earlier, a fresh instance is
    /// made (configured and opened) first.
    pub async fn collect(&mut self, batch: &Batch) -> Result<(), CallFailure> {
        match self {
            Self::Log(sink) => {
                for payload in batch.payloads() {
                    tracing::info!(
                        rule = %sink.rule,
                        action = %sink.action,
                        "sink result for rule {}: {}",
                        sink.rule,
                        String::from_utf8_lossy(payload)
                    );
                }
                Ok(())
            }
            Self::Nop(sink) => {
                if sink.log {
                    for payload in batch.payloads() {
                        tracing::debug!("nop sink: {}", String::from_utf8_lossy(payload));
                    }
                }
                Ok(())
            }
            Self::Memory(sink) => {
                // A payload whose topic cannot be evaluated rejects the batch before anything
                // of it is published (it is dead-lettered and counted).
                let topics = batch
                    .payloads()
                    .map(|payload| sink.topic.of(payload))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(CallFailure::Rejected)?;
                if let Some(table) = &sink.table {
                    // Checked whole first: a batch with a bad row changes nothing.
                    let changes = batch
                        .iter()
                        .map(|(payload, ts)| table.changes(payload, ts))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(CallFailure::Rejected)?;
                    for (changes, topic) in changes.into_iter().zip(&topics) {
                        for (key, row) in changes {
                            sink.bus.table_apply(topic, key, row);
                        }
                    }
                }
                let meta_topic: Arc<str> = Arc::from(sink.topic.text());
                for ((payload, ts), topic) in batch.iter().zip(topics) {
                    let message = Published {
                        payload: Arc::from(payload),
                        timestamp_ms: ts,
                        topic: Arc::clone(&meta_topic),
                    };
                    sink.bus.publish(&topic, message).await;
                }
                Ok(())
            }
            Self::Mqtt(sink) => sink.collect(batch.payloads(), batch.sequence()).await,
            Self::Unavailable(reason) => Err(CallFailure::Transient(reason.to_string())),
            #[cfg(test)]
            Self::Fake(sink) => sink.collect(batch).await,
            Self::Wasm(sink) => {
                // A batch boundary: a new build that is ready takes over here.
                if let Some(swap) = sink.waiting_swap() {
                    sink.apply(swap).await;
                }
                if let Err((phase, failure)) = sink.ensure_instance(true).await {
                    // A target that is still down is transient; a replacement that cannot
                    // start otherwise is as broken as a trap.
                    return Err(match failure {
                        CallFailure::Transient(m) => {
                            CallFailure::Transient(format!("starting the sink, {phase}: {m}"))
                        }
                        CallFailure::Trap(m) => CallFailure::Trap(format!("{phase}: {m}")),
                        other => CallFailure::Trap(format!(
                            "restarting the sink, {phase} failed: {other}"
                        )),
                    });
                }
                let Some(instance) = sink.instance.as_mut() else {
                    return Err(CallFailure::Trap("no instance".into()));
                };
                let result = instance.collect(batch.as_wit()).await;
                sink.report_swap();
                result
            }
        }
    }

    /// Why the sink cannot be used at all, if its module could not be loaded.
    pub fn unavailable(&self) -> Option<&str> {
        match self {
            Self::Unavailable(reason) => Some(reason),
            _ => None,
        }
    }

    /// True for a wasm sink whose instance trapped (the next `collect` replaces it).
    pub fn needs_restart(&self) -> bool {
        match self {
            Self::Wasm(sink) => sink.instance.as_ref().is_none_or(|i| i.is_poisoned()),
            _ => false,
        }
    }

    /// Waits until a new build is ready for this sink (never, for sinks that are not wasm or
    /// not watched); [`Connector::swap_to_ready`] then switches to it. Used while the action is
    /// idle, raced against its input: cancelling the wait loses nothing (a build received is
    /// kept for the switch, or taken at the next batch).
    pub async fn next_swap(&mut self) {
        match self {
            Self::Wasm(sink) if sink.ready.is_some() => {}
            Self::Wasm(sink) => match sink.swaps.as_mut() {
                Some(rx) => match rx.recv().await {
                    Some(swap) => sink.ready = Some(swap),
                    None => {
                        sink.swaps = None;
                        std::future::pending::<()>().await;
                    }
                },
                None => std::future::pending::<()>().await,
            },
            _ => std::future::pending::<()>().await,
        }
    }

    /// Switches to the new build [`Connector::next_swap`] waited for, and logs the switch.
    pub async fn swap_to_ready(&mut self) {
        if let Self::Wasm(sink) = self
            && let Some(swap) = sink.ready.take()
        {
            sink.apply(swap).await;
            sink.report_swap();
        }
    }

    /// Flushes and releases the sink (and a new build that was ready but not yet used).
    pub async fn close(&mut self) -> Result<(), CallFailure> {
        match self {
            Self::Wasm(sink) => {
                sink.report_swap();
                if let Some(mut unused) = sink.ready.take() {
                    let _ = unused.instance.close().await;
                }
                if let Some(mut rx) = sink.swaps.take() {
                    rx.close();
                    while let Ok(mut unused) = rx.try_recv() {
                        let _ = unused.instance.close().await;
                    }
                }
                match sink.instance.take() {
                    Some(mut instance) if !instance.is_poisoned() => instance.close().await,
                    _ => Ok(()),
                }
            }
            Self::Mqtt(sink) => {
                sink.close().await;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_table_keys_are_equal_as_numbers_are() {
        use crate::sql::Lookup;
        use crate::value::Value;
        let table = MemoryTable {
            key: "k".into(),
            rowkind_field: None,
        };
        let bus = MemoryBus::new();
        let apply = |payload: &str| {
            for (key, row) in table.changes(payload.as_bytes(), 0).unwrap() {
                bus.table_apply("t", key, row);
            }
        };
        apply(r#"{"k":1.0,"v":"one"}"#);
        apply(r#"{"k":"2","v":"two"}"#);
        let lookup = crate::source::memory::MemoryLookup {
            bus: Arc::clone(&bus),
            topic: "t".into(),
        };
        let v = |key: Value| -> Vec<String> {
            let rows = lookup.get(&key).unwrap();
            rows.iter().map(|r| r.get("v").unwrap().to_text()).collect()
        };
        // The float key 1.0 is found by the integer 1 (eKuiper reads both as the same number).
        assert_eq!(v(Value::Int(1)), ["one"]);
        assert_eq!(v(Value::Float(1.0)), ["one"]);
        // A string is not a number.
        assert!(v(Value::string("1")).is_empty());
        assert_eq!(v(Value::string("2")), ["two"]);
        assert!(v(Value::Int(2)).is_empty());
        // `1` updates the row kept under `1.0`.
        apply(r#"{"k":1,"v":"uno"}"#);
        assert_eq!(v(Value::Float(1.0)), ["uno"]);
    }

    fn tag() -> InstanceTag {
        InstanceTag {
            rule: Arc::from("r"),
            action: Arc::from("memory_0"),
            instance: 0,
            dropped_logs: Arc::default(),
        }
    }

    fn context() -> WitContext {
        WitContext {
            rule_id: "r".into(),
            action: "memory_0".into(),
            instance: 0,
            format: "json".into(),
            generation: 0,
        }
    }

    #[tokio::test]
    async fn the_memory_sink_evaluates_its_topic_for_each_message() {
        let bus = MemoryBus::new();
        let props: Map<String, Json> =
            serde_json::from_str(r#"{"topic":"devices/{{.device}}"}"#).unwrap();
        let spec = ConnectorSpec::builtin("memory", &props, &bus, std::path::Path::new("."))
            .unwrap()
            .unwrap();
        let mut a = bus.subscribe("devices/a");
        let mut b = bus.subscribe("devices/b");
        let metrics = Arc::new(ActionMetrics::default());
        let mut sink = spec
            .start(context(), tag(), &metrics, &Arc::new(Sequencer::fresh()))
            .await
            .unwrap();
        let mut batch = Batch::new();
        for payload in [
            r#"{"device":"a","n":0}"#,
            r#"{"device":"b","n":1}"#,
            r#"{"device":"a","n":2}"#,
        ] {
            batch.push(payload.as_bytes(), 0);
        }
        sink.collect(&batch).await.unwrap();
        let text = |m: Published| String::from_utf8(m.payload.to_vec()).unwrap();
        assert_eq!(text(a.try_recv().unwrap()), r#"{"device":"a","n":0}"#);
        assert_eq!(text(a.try_recv().unwrap()), r#"{"device":"a","n":2}"#);
        assert_eq!(text(b.try_recv().unwrap()), r#"{"device":"b","n":1}"#);
        assert!(a.try_recv().is_err() && b.try_recv().is_err());

        // A message the topic cannot be evaluated for rejects the batch, and nothing of it
        // is published.
        let mut bad = Batch::new();
        bad.push(br#"{"device":"a"}"#, 0);
        bad.push(b"not json", 0);
        let err = sink.collect(&bad).await.unwrap_err();
        assert!(matches!(err, CallFailure::Rejected(ref m) if m.contains("needs a JSON message")));
        assert!(a.try_recv().is_err());
    }

    #[test]
    fn a_template_is_refused_in_a_prop_the_manifest_does_not_make_dynamic() {
        let props: Map<String, Json> =
            serde_json::from_str(r#"{"path":"{{.d}}.csv","key":"k-{{.id}}","n":1}"#).unwrap();
        let (prop, message) = dynamic_props(&props, &["path".to_string()]).unwrap_err();
        assert_eq!(prop, "key");
        assert!(message.contains("its dynamic props are: path"), "{message}");
        let (prop, message) = dynamic_props(&props, &[]).unwrap_err();
        assert!(prop == "key" || prop == "path");
        assert!(
            message.contains("this sink has no dynamic props"),
            "{message}"
        );
        let ok = dynamic_props(&props, &["path".into(), "key".into()]).unwrap();
        assert_eq!(
            ok.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["key", "path"]
        );
    }
}
