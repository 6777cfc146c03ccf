//! Rule actions: resolving the sink an action names, validating its props, and the delivery loop
//! that turns the rule's messages into batches and hands them to the sink's instances.
//!
//! Outcomes of a `collect`, end to end: `ok` counts the batch out; `transient` retries it with
//! backoff (`retryCount`, `retryInterval`) and then counts it failed; `rejected` counts it
//! failed at once; a trap replaces the instance (configure and open again) and delivers the
//! batch again, up to three times, after which the batch counts as failed (a poison batch).
//! Every payload is either delivered or counted failed, and failures are logged.

mod connector;
mod mqtt;
pub mod props;
pub mod transform;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

pub use connector::{
    BUILTINS, Batch, Connector, ConnectorSpec, Phase, WasmSink, WasmSpec, clear, empty_batch, push,
};
pub use props::{CommonProps, PayloadFormat, PropError};
pub use transform::{Produced, TransformError, Transformer};

use crate::host::bindings::WitContext;
use crate::host::{
    CallFailure, Grants, InstanceTag, Limits, LoadError, ManifestError, Plugin, SinkHost,
};
use crate::message::Message;
use crate::metrics::ActionMetrics;
use crate::reload::Reloader;
use crate::rule::{ActionDef, RuleDef};
use crate::source::MemoryBus;

/// A chunk of messages from the rule, shared by all its actions.
pub type Chunk = Arc<[Message]>;

/// Times a batch may trap its instance before it is given up as poison.
pub const MAX_TRAPS_PER_BATCH: u32 = 3;

/// An action cannot start. Each variant names the action (`<plugin>_<index>`).
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The action names no built-in sink and no plugin file.
    #[error(
        "action `{action}`: unknown sink `{plugin}`: it is not built in ({builtins}) and there is no {tried}"
    )]
    UnknownSink {
        /// The action.
        action: String,
        /// The name it gave.
        plugin: String,
        /// The built-in sinks.
        builtins: String,
        /// The files looked for.
        tried: String,
    },
    /// The sink component could not be loaded.
    #[error("action `{action}`: {source}")]
    Load {
        /// The action.
        action: String,
        /// Why.
        source: LoadError,
    },
    /// A common property is wrong.
    #[error("action `{action}`: {source}")]
    Props {
        /// The action.
        action: String,
        /// Which and why.
        source: PropError,
    },
    /// A built-in sink's own props are wrong.
    #[error("action `{action}`: props of the `{plugin}` sink: {message}")]
    BuiltinProps {
        /// The action.
        action: String,
        /// The sink.
        plugin: String,
        /// What serde said.
        message: String,
    },
    /// What the manifest grants cannot be set up from the props.
    #[error("action `{action}`: {source}")]
    Grants {
        /// The action.
        action: String,
        /// Why.
        source: ManifestError,
    },
    /// The sink failed in a lifecycle phase (refused its props, could not open, trapped).
    #[error("action `{action}`: {phase} failed: {failure}")]
    Lifecycle {
        /// The action.
        action: String,
        /// The phase.
        phase: Phase,
        /// What happened.
        failure: CallFailure,
    },
}

/// What actions need from the run.
pub struct ActionEnv {
    /// The wasm engine.
    pub host: SinkHost,
    /// `plugins/` (sink components are in `plugins/sinks/`).
    pub plugins_dir: PathBuf,
    /// The in-process bus of memory sinks and streams.
    pub bus: Arc<MemoryBus>,
    /// Components loaded so far in this run, by path.
    loaded: Mutex<HashMap<PathBuf, Arc<Plugin>>>,
    /// Set when modules are hot-reloaded: wasm actions register with it.
    pub reloader: Option<Arc<Reloader>>,
}

impl ActionEnv {
    /// An environment for one run.
    pub fn new(host: SinkHost, plugins_dir: PathBuf, bus: Arc<MemoryBus>) -> Self {
        Self {
            host,
            plugins_dir,
            bus,
            loaded: Mutex::new(HashMap::new()),
            reloader: None,
        }
    }

    /// The file a plugin name resolves to, eKuiper style: `plugins/sinks/<Name>.wasm` with the
    /// first letter upper-cased, else the exact name.
    pub fn resolve_plugin(&self, name: &str) -> Result<PathBuf, Vec<PathBuf>> {
        let dir = self.plugins_dir.join("sinks");
        let mut upper = name.to_string();
        if let Some(first) = upper.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        let candidates = [
            dir.join(format!("{upper}.wasm")),
            dir.join(format!("{name}.wasm")),
        ];
        candidates
            .iter()
            .find(|p| p.is_file())
            .cloned()
            .ok_or_else(|| candidates.to_vec())
    }

    /// Loads (once per run) the component at `path`, off the async runtime's threads.
    pub async fn load(&self, path: &Path) -> Result<Arc<Plugin>, LoadError> {
        if let Some(p) = self.loaded.lock().ok().and_then(|l| l.get(path).cloned()) {
            return Ok(p);
        }
        let host = self.host.clone();
        let owned = path.to_owned();
        let plugin = tokio::task::spawn_blocking(move || host.load(&owned))
            .await
            .map_err(|e| LoadError::Compile {
                path: path.to_owned(),
                reason: format!("the loader panicked: {e}"),
            })??;
        if let Ok(mut loaded) = self.loaded.lock() {
            loaded.insert(path.to_owned(), Arc::clone(&plugin));
        }
        Ok(plugin)
    }
}

/// An action with its sink resolved and props validated, ready to start.
#[derive(Debug)]
pub struct PreparedAction {
    /// `<plugin>_<index>`.
    pub name: Arc<str>,
    /// The sink name the rule gave.
    pub plugin: String,
    /// The rule's id.
    pub rule: Arc<str>,
    /// Common props.
    pub common: CommonProps,
    /// How to make its connectors.
    pub spec: ConnectorSpec,
    /// Its counters.
    pub metrics: Arc<ActionMetrics>,
    /// The rule's `sendNilField`.
    pub send_nil: bool,
}

impl PreparedAction {
    fn context(&self, instance: u32) -> WitContext {
        WitContext {
            rule_id: self.rule.to_string(),
            action: self.name.to_string(),
            instance,
            format: self.common.format.name().to_string(),
            generation: 0,
        }
    }

    fn lifecycle_error(&self) -> impl Fn((Phase, CallFailure)) -> ActionError + '_ {
        |(phase, failure)| ActionError::Lifecycle {
            action: self.name.to_string(),
            phase,
            failure,
        }
    }

    fn tag(&self, instance: u32) -> InstanceTag {
        InstanceTag {
            rule: Arc::clone(&self.rule),
            action: Arc::clone(&self.name),
            instance,
            dropped_logs: Arc::clone(&self.metrics.dropped_logs),
        }
    }
}

/// Resolves an action's sink and validates its props. With `prepare_fs`, folders of granted
/// writable files are created (running); without, nothing on disk changes (validating).
pub async fn prepare(
    rule: &RuleDef,
    def: &ActionDef,
    env: &ActionEnv,
    prepare_fs: bool,
) -> Result<PreparedAction, ActionError> {
    let name = def.name();
    let (common, mut own) = props::split(&def.props).map_err(|source| ActionError::Props {
        action: name.clone(),
        source,
    })?;
    let spec = match ConnectorSpec::builtin(&def.plugin, &own, &env.bus, &rule.base_dir) {
        Some(Ok(spec)) => spec,
        Some(Err(message)) => {
            return Err(ActionError::BuiltinProps {
                action: name,
                plugin: def.plugin.clone(),
                message,
            });
        }
        None => {
            let path =
                env.resolve_plugin(&def.plugin)
                    .map_err(|tried| ActionError::UnknownSink {
                        action: name.clone(),
                        plugin: def.plugin.clone(),
                        builtins: BUILTINS.join(", "),
                        tried: tried
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(" or "),
                    })?;
            let plugin = env.load(&path).await.map_err(|source| ActionError::Load {
                action: name.clone(),
                source,
            })?;
            let raw_props = own.clone();
            let mut grants =
                Grants::resolve(&plugin.manifest, &mut own, &rule.base_dir, prepare_fs).map_err(
                    |source| ActionError::Grants {
                        action: name.clone(),
                        source,
                    },
                )?;
            grants.limits =
                checked_limits(&common, &env.host).map_err(|source| ActionError::Props {
                    action: name.clone(),
                    source,
                })?;
            ConnectorSpec::Wasm(WasmSpec {
                host: env.host.clone(),
                plugin,
                grants: Arc::new(grants),
                props: Arc::from(serde_json::Value::Object(own).to_string()),
                raw_props,
                base_dir: rule.base_dir.clone(),
                reloader: env.reloader.clone(),
            })
        }
    };
    Ok(PreparedAction {
        name: Arc::from(name),
        plugin: def.plugin.clone(),
        rule: Arc::from(rule.id.as_str()),
        common,
        spec,
        metrics: Arc::new(ActionMetrics::default()),
        send_nil: rule.options.send_nil_field,
    })
}

/// The action's limits, checked against what the engine allows.
fn checked_limits(common: &CommonProps, host: &SinkHost) -> Result<Limits, PropError> {
    let limits = common.limits;
    let config = host.config();
    if let Some(bytes) = limits.max_memory_bytes
        && config.max_instances > 0
        && bytes > config.max_memory_bytes
    {
        return Err(PropError {
            prop: "maxMemory".into(),
            message: format!(
                "{bytes} bytes is more than the host's pooled instances hold ({} bytes; raise \
                 `--memory-limit-mib`)",
                config.max_memory_bytes
            ),
        });
    }
    if limits.fuel_per_call.is_some() && config.fuel_per_call == 0 {
        return Err(PropError {
            prop: "fuel".into(),
            message: "fuel metering is off in this host (`--fuel 0`)".into(),
        });
    }
    Ok(limits)
}

/// Checks an action without running it: a wasm sink is instantiated and `configure`d (which
/// must have no side effects), then dropped.
pub async fn validate(action: &PreparedAction) -> Result<(), ActionError> {
    if let ConnectorSpec::Wasm(spec) = &action.spec {
        // `configure` may not touch the outside world, so it is given no grants at all (the
        // granted folders may not even exist before a run creates them).
        let spec = WasmSpec {
            grants: Arc::new(Grants {
                limits: spec.grants.limits,
                ..Grants::default()
            }),
            ..spec.clone()
        };
        // Every instance is configured: a sink may accept only some instance counts.
        for i in 0..action.common.concurrency {
            WasmSink::validate(&spec, action.context(i), action.tag(i))
                .await
                .map_err(action.lifecycle_error())?;
        }
    }
    Ok(())
}

/// An action whose sink instances are open, ready to receive messages.
pub struct StartedAction {
    action: PreparedAction,
    connectors: Vec<Connector>,
}

impl StartedAction {
    /// The action.
    pub fn action(&self) -> &PreparedAction {
        &self.action
    }
}

/// Starts an action's `concurrency` sink instances (configure, open).
pub async fn start(action: PreparedAction) -> Result<StartedAction, ActionError> {
    let mut connectors = Vec::with_capacity(action.common.concurrency as usize);
    for i in 0..action.common.concurrency {
        let connector = action
            .spec
            .start(action.context(i), action.tag(i), &action.metrics)
            .await
            .map_err(action.lifecycle_error())?;
        connectors.push(connector);
    }
    Ok(StartedAction { action, connectors })
}

/// Delivers batches to one connector, applying the outcome rules.
struct Deliverer {
    connector: Connector,
    metrics: Arc<ActionMetrics>,
    retry_count: u32,
    retry_interval: Duration,
    name: Arc<str>,
}

impl Deliverer {
    async fn deliver(&mut self, batch: &Batch) {
        let n = batch.ends.len() as u64;
        if n == 0 {
            return;
        }
        let mut retries = 0u32;
        let mut traps = 0u32;
        loop {
            let started = Instant::now();
            let result = self.connector.collect(batch).await;
            self.metrics.batches.add(1);
            self.metrics
                .collect_time_ns
                .add(started.elapsed().as_nanos() as u64);
            let failure = match result {
                Ok(()) => {
                    self.metrics.records_out.add(n);
                    return;
                }
                Err(failure) => failure,
            };
            let action = &*self.name;
            match failure {
                CallFailure::Transient(message) if retries < self.retry_count => {
                    retries += 1;
                    self.metrics.retries.add(1);
                    let delay = backoff(self.retry_interval, retries);
                    tracing::debug!(
                        action,
                        retry = retries,
                        ?delay,
                        "transient sink error, retrying: {message}"
                    );
                    tokio::time::sleep(delay).await;
                }
                CallFailure::Trap(message) if traps + 1 < MAX_TRAPS_PER_BATCH => {
                    traps += 1;
                    self.metrics.restarts.add(1);
                    self.metrics
                        .exceptions
                        .record(format!("trapped: {message}"));
                    tracing::warn!(
                        action,
                        "sink instance trapped; replacing it and delivering the batch again: {message}"
                    );
                }
                CallFailure::Trap(message) => {
                    self.metrics.restarts.add(1);
                    self.fail(n, format!("poison batch: it trapped the sink {MAX_TRAPS_PER_BATCH} times; last: {message}"));
                    return;
                }
                CallFailure::Transient(message) => {
                    self.fail(
                        n,
                        format!("transient error, gave up after {retries} retries: {message}"),
                    );
                    return;
                }
                CallFailure::Rejected(message) => {
                    self.fail(n, format!("rejected: {message}"));
                    return;
                }
                CallFailure::InvalidConfig(message) => {
                    self.fail(n, format!("invalid config reported by collect: {message}"));
                    return;
                }
            }
        }
    }

    fn fail(&self, n: u64, message: String) {
        tracing::error!(action = %self.name, messages = n, "batch not delivered: {message}");
        self.metrics.failed.add(n);
        self.metrics.exceptions.record(message);
    }

    async fn close(&mut self) {
        if let Err(failure) = self.connector.close().await {
            tracing::error!(action = %self.name, "close failed: {failure}");
            self.metrics.exceptions.record(format!("close: {failure}"));
        }
    }
}

fn backoff(first: Duration, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(16);
    (first * factor).min(Duration::from_secs(30))
}

/// Largest opportunistic batch when `batchSize` is not set.
const MAX_DRAIN: usize = 4096;

/// Runs an action until the rule's channel closes: transform, batch, deliver, then close the
/// sink instances.
pub async fn run(started: StartedAction, mut rx: mpsc::Receiver<Chunk>) {
    let StartedAction { action, connectors } = started;
    let common = action.common.clone();
    let metrics = Arc::clone(&action.metrics);
    let mut transformer = Transformer::new(common.clone(), action.send_nil);
    let mut deliverers: Vec<Deliverer> = connectors
        .into_iter()
        .map(|connector| Deliverer {
            connector,
            metrics: Arc::clone(&metrics),
            retry_count: common.retry_count,
            retry_interval: Duration::from_millis(common.retry_interval_ms.max(1)),
            name: Arc::clone(&action.name),
        })
        .collect();

    // With several instances, batches are handed out to whichever instance is free.
    let (pool_tx, workers) = if deliverers.len() > 1 {
        let (tx, rx) = mpsc::channel::<Batch>(deliverers.len());
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let workers: Vec<_> = deliverers
            .drain(..)
            .map(|mut d| {
                let rx = Arc::clone(&rx);
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            next = async { rx.lock().await.recv().await } => {
                                let Some(batch) = next else { break };
                                d.deliver(&batch).await;
                            }
                            // Idle, a new build that is ready takes over now.
                            () = d.connector.next_swap() => {}
                        }
                    }
                    d.close().await;
                })
            })
            .collect();
        (Some(tx), workers)
    } else {
        (None, Vec::new())
    };

    let mut out = Output {
        batch: empty_batch(),
        single: deliverers.pop(),
        pool: pool_tx,
        metrics: Arc::clone(&metrics),
    };
    let mut scratch = empty_batch();
    let mut errors = Vec::new();
    let linger = (common.linger_ms > 0).then(|| Duration::from_millis(common.linger_ms));
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let linger_until = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let idle_swap = async {
            match out.single.as_mut() {
                Some(single) => single.connector.next_swap().await,
                None => std::future::pending().await,
            }
        };
        let next = tokio::select! {
            chunk = rx.recv() => chunk,
            () = linger_until => {
                deadline = None;
                out.header(&transformer);
                out.flush().await;
                continue;
            }
            // Idle, a new build that is ready takes over now (otherwise at the next batch).
            () = idle_swap => continue,
        };
        let Some(mut chunk) = next else { break };
        loop {
            for message in chunk.iter() {
                metrics.records_in.add(1);
                clear(&mut scratch);
                let ts = message.timestamp_ms();
                let produced =
                    transformer.transform(message, &mut |p| push(&mut scratch, p, ts), &mut errors);
                metrics.omitted.add(u64::from(produced.omitted));
                for err in errors.drain(..) {
                    tracing::warn!(action = %action.name, "cannot build the payload: {err}");
                    metrics.failed.add(1);
                    metrics.exceptions.record(err.to_string());
                }
                let mut start = 0usize;
                for (&end, &ts) in scratch.ends.iter().zip(&scratch.timestamps) {
                    push(&mut out.batch, &scratch.payloads[start..end as usize], ts);
                    start = end as usize;
                    if common.batch_size > 0 && out.batch.ends.len() >= common.batch_size {
                        out.header(&transformer);
                        out.flush().await;
                        deadline = None;
                    }
                }
            }
            if common.batch_size > 0 || out.batch.ends.len() >= MAX_DRAIN {
                break;
            }
            // No batch size: take whatever else is already waiting, then deliver it all.
            match rx.try_recv() {
                Ok(more) => chunk = more,
                Err(_) => break,
            }
        }
        if common.batch_size == 0 {
            out.header(&transformer);
            out.flush().await;
        } else if deadline.is_none() && !out.batch.ends.is_empty() {
            deadline = linger.map(|l| tokio::time::Instant::now() + l);
        }
    }
    out.header(&transformer);
    out.flush().await;
    if let Some(mut single) = out.single.take() {
        single.close().await;
    }
    drop(out.pool.take());
    for worker in workers {
        if let Err(e) = worker.await {
            tracing::error!(action = %action.name, "a sink worker panicked: {e}");
        }
    }
}

/// Where finished batches go: the one connector, or the pool of instance workers.
struct Output {
    batch: Batch,
    single: Option<Deliverer>,
    pool: Option<mpsc::Sender<Batch>>,
    metrics: Arc<ActionMetrics>,
}

impl Output {
    fn header(&mut self, transformer: &Transformer) {
        self.batch.header = transformer.header();
    }

    async fn flush(&mut self) {
        if self.batch.ends.is_empty() {
            return;
        }
        if let Some(single) = &mut self.single {
            single.deliver(&self.batch).await;
            clear(&mut self.batch);
        } else if let Some(pool) = &self.pool {
            let batch = std::mem::replace(&mut self.batch, empty_batch());
            if let Err(lost) = pool.send(batch).await {
                let n = lost.0.ends.len() as u64;
                tracing::error!(
                    messages = n,
                    "the sink workers stopped early: batch not delivered"
                );
                self.metrics.failed.add(n);
                self.metrics
                    .exceptions
                    .record("the sink workers stopped early");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::HostConfig;

    #[test]
    fn plugin_names_resolve_ucfirst_then_exact() {
        let dir = std::env::temp_dir().join(format!("oort-resolve-{}", std::process::id()));
        let sinks = dir.join("sinks");
        std::fs::create_dir_all(&sinks).unwrap();
        std::fs::write(sinks.join("MySink.wasm"), b"").unwrap();
        std::fs::write(sinks.join("lower.wasm"), b"").unwrap();
        let host = SinkHost::new(HostConfig {
            cache_dir: None,
            max_instances: 0,
            ..HostConfig::default()
        })
        .unwrap();
        let env = ActionEnv::new(host, dir.clone(), MemoryBus::new());
        assert_eq!(
            env.resolve_plugin("mySink").unwrap(),
            sinks.join("MySink.wasm")
        );
        assert_eq!(
            env.resolve_plugin("MySink").unwrap(),
            sinks.join("MySink.wasm")
        );
        assert_eq!(
            env.resolve_plugin("lower").unwrap(),
            sinks.join("lower.wasm")
        );
        let tried = env.resolve_plugin("nothing").unwrap_err();
        assert_eq!(
            tried,
            [sinks.join("Nothing.wasm"), sinks.join("nothing.wasm")]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
