//! Rule actions: resolving the sink an action names, validating its props, and the delivery loop
//! that turns the rule's messages into batches and hands them to the sink's instances.
//!
//! Outcomes of a `collect`, end to end: `ok` counts the batch out; `transient` retries it with
//! backoff (`retryCount`, `retryInterval`), then keeps it in the action's cache (`enableCache`)
//! to resend in order when the sink recovers; `rejected` goes to the dead-letter output at once;
//! a trap replaces the instance (configure and open again) and delivers the batch again, up to
//! three times, after which the batch is poison and goes to the dead-letter output. Without a
//! cache or a dead-letter output the batch counts as failed. Every payload ends up delivered,
//! dead-lettered, cached or failed, and counted: `payloads (+ restored) = out + dead-lettered +
//! failed + cached`.

pub mod cache;
mod connector;
pub mod dead_letter;
mod mqtt;
pub mod props;
pub mod transform;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

pub use cache::{ActionCache, CacheConfig, CacheError};
pub use connector::{
    BUILTINS, Batch, Connector, ConnectorSpec, Phase, WasmSink, WasmSpec, clear, empty_batch, push,
};
pub use dead_letter::{DeadLetter, DeadReason};
pub use props::{CommonProps, DeadLetterSpec, PayloadFormat, PropError};
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

/// The longest wait between two resends of a failing sink (unless `resendInterval` is longer).
const MAX_RESEND_BACKOFF: Duration = Duration::from_secs(1);

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
    /// The action's disk cache cannot be opened.
    #[error("action `{action}`: {source}")]
    Cache {
        /// The action.
        action: String,
        /// Why.
        source: CacheError,
    },
    /// The dead-letter output cannot be set up.
    #[error("action `{action}`: prop `deadLetter`: {message}")]
    DeadLetter {
        /// The action.
        action: String,
        /// Why.
        message: String,
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
    /// Where actions keep their disk caches (`<dir>/cache/<rule>/<action>.redb`).
    pub data_dir: PathBuf,
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
            data_dir: PathBuf::from("data"),
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
    /// The disk cache file, when `enableCache` is on.
    pub cache_path: Option<PathBuf>,
    /// Where undeliverable batches go.
    pub dead_letter: Option<PreparedDeadLetter>,
}

/// A dead-letter output, checked and ready to open.
#[derive(Debug)]
pub enum PreparedDeadLetter {
    /// A JSON-lines file (absolute).
    File(PathBuf),
    /// Another action.
    Action(Box<PreparedAction>),
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
    let builtin = ConnectorSpec::builtin(&def.plugin, &own, &env.bus, &rule.base_dir);
    if builtin.is_some() && common.grants.is_some() {
        return Err(ActionError::Props {
            action: name,
            source: PropError {
                prop: "grants".into(),
                message: format!(
                    "`{}` is built in and not sandboxed: grants apply to wasm sinks",
                    def.plugin
                ),
            },
        });
    }
    let spec = match builtin {
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
            let plugin = match env.load(&path).await {
                Ok(plugin) => plugin,
                // A broken module takes down its own action only: the rule's other actions
                // run, and this one's messages are cached or dead-lettered, and counted.
                Err(
                    source @ (LoadError::NotWasm { .. }
                    | LoadError::CoreModule { .. }
                    | LoadError::Compile { .. }
                    | LoadError::WrongWorld { .. }),
                ) if prepare_fs => {
                    let reason = source.to_string();
                    tracing::error!(
                        rule = %rule.id,
                        action = %name,
                        "the sink cannot start, its messages will not reach it: {reason}"
                    );
                    return finish(
                        rule,
                        def,
                        env,
                        name,
                        common,
                        ConnectorSpec::Unavailable(reason),
                        prepare_fs,
                    )
                    .await;
                }
                Err(source) => {
                    return Err(ActionError::Load {
                        action: name.clone(),
                        source,
                    });
                }
            };
            let raw_props = own.clone();
            let mut grants =
                Grants::resolve(&plugin.manifest, &mut own, &rule.base_dir, prepare_fs).map_err(
                    |source| ActionError::Grants {
                        action: name.clone(),
                        source,
                    },
                )?;
            if let Some(explicit) = &common.grants {
                grants
                    .add_explicit(explicit, &rule.base_dir, prepare_fs)
                    .map_err(|source| ActionError::Grants {
                        action: name.clone(),
                        source,
                    })?;
            }
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
    finish(rule, def, env, name, common, spec, prepare_fs).await
}

/// The rest of [`prepare`]: the cache file and the dead-letter output.
async fn finish(
    rule: &RuleDef,
    def: &ActionDef,
    env: &ActionEnv,
    name: String,
    common: CommonProps,
    spec: ConnectorSpec,
    prepare_fs: bool,
) -> Result<PreparedAction, ActionError> {
    let cache_path = common.cache.as_ref().map(|_| {
        env.data_dir
            .join("cache")
            .join(file_safe(&rule.id))
            .join(format!("{}.redb", file_safe(&name)))
    });
    let dead_letter = match &common.dead_letter {
        None => None,
        Some(DeadLetterSpec::File(path)) => Some(PreparedDeadLetter::File(crate::host::absolute(
            &rule.base_dir,
            Path::new(path),
        ))),
        Some(DeadLetterSpec::Action { plugin, props }) => {
            let inner = ActionDef {
                index: def.index,
                plugin: plugin.clone(),
                props: props.clone(),
            };
            let prepared = Box::pin(prepare(rule, &inner, env, prepare_fs))
                .await
                .map_err(|e| ActionError::DeadLetter {
                    action: name.clone(),
                    message: e.to_string(),
                })?;
            let mut prepared = prepared;
            prepared.name = Arc::from(format!("{name}_deadletter"));
            Some(PreparedDeadLetter::Action(Box::new(prepared)))
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
        cache_path,
        dead_letter,
    })
}

/// A rule id or action name as a file name: anything but letters, digits, `-`, `_` and `.`
/// becomes `_`.
fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
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
    if let Some(PreparedDeadLetter::Action(inner)) = &action.dead_letter {
        Box::pin(validate(inner))
            .await
            .map_err(|e| ActionError::DeadLetter {
                action: action.name.to_string(),
                message: e.to_string(),
            })?;
    }
    Ok(())
}

/// An action whose sink instances are open, ready to receive messages.
pub struct StartedAction {
    action: PreparedAction,
    connectors: Vec<Connector>,
    cache: Option<ActionCache>,
    dead_letter: Option<DeadLetter>,
    stop: watch::Receiver<bool>,
}

impl StartedAction {
    /// The action.
    pub fn action(&self) -> &PreparedAction {
        &self.action
    }

    /// Tells the action when the run is stopping (SIGINT/SIGTERM): it then stops waiting for
    /// a failing sink and keeps what it holds in its cache.
    pub fn set_stop(&mut self, stop: watch::Receiver<bool>) {
        self.stop = stop;
    }
}

/// Starts an action's `concurrency` sink instances (configure, open), opens its cache (counting
/// what a previous run left in it) and its dead-letter output.
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
    let cache = match (&action.cache_path, &action.common.cache) {
        (Some(path), Some(config)) => {
            let path = path.clone();
            let config = config.clone();
            let cache = tokio::task::spawn_blocking(move || ActionCache::open(&path, config))
                .await
                .map_err(|e| ActionError::DeadLetter {
                    action: action.name.to_string(),
                    message: format!("opening the cache panicked: {e}"),
                })?
                .map_err(|source| ActionError::Cache {
                    action: action.name.to_string(),
                    source,
                })?;
            if !cache.is_empty() {
                tracing::info!(
                    action = %action.name,
                    messages = cache.len(),
                    "messages cached by an earlier run will be resent first"
                );
                action.metrics.cache_restored.add(cache.len());
                action.metrics.set_cached(cache.len());
            }
            Some(cache)
        }
        _ => None,
    };
    let dead_letter = match &action.dead_letter {
        None => None,
        Some(PreparedDeadLetter::File(path)) => Some(DeadLetter::file(path.clone()).map_err(
            |e| ActionError::DeadLetter {
                action: action.name.to_string(),
                message: format!("cannot open {}: {e}", path.display()),
            },
        )?),
        Some(PreparedDeadLetter::Action(inner)) => {
            let connector = inner
                .spec
                .start(inner.context(0), inner.tag(0), &inner.metrics)
                .await
                .map_err(inner.lifecycle_error())
                .map_err(|e| ActionError::DeadLetter {
                    action: action.name.to_string(),
                    message: e.to_string(),
                })?;
            Some(DeadLetter::Action {
                name: inner.name.to_string(),
                connector: Box::new(connector),
                retry_count: inner.common.retry_count,
                retry_interval: Duration::from_millis(inner.common.retry_interval_ms.max(1)),
            })
        }
    };
    Ok(StartedAction {
        action,
        connectors,
        cache,
        dead_letter,
        stop: watch::channel(false).1,
    })
}

/// What an action's instance workers share: the cache, the dead-letter output, the stop signal.
struct Delivery {
    rule: Arc<str>,
    name: Arc<str>,
    metrics: Arc<ActionMetrics>,
    retry_count: u32,
    retry_interval: Duration,
    cache: Option<tokio::sync::Mutex<CacheState>>,
    dead_letter: Option<tokio::sync::Mutex<DeadLetter>>,
    stop: watch::Receiver<bool>,
}

struct CacheState {
    cache: ActionCache,
    /// A worker is resending the head right now (the head stays cached until it is delivered).
    resending: bool,
    /// Earliest time of the next resend.
    next_resend: tokio::time::Instant,
    /// Failed resends in a row (for the backoff).
    failures: u32,
}

/// How one attempt to hand a batch to the sink ended, when it did not deliver it.
struct Undelivered {
    reason: DeadReason,
    message: String,
}

/// What a resend did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resend {
    /// Nothing to resend (empty, or another worker is at it).
    Idle,
    /// Not yet: the next resend is due later.
    NotDue,
    /// The head left the cache (delivered or dead-lettered).
    Done,
    /// The sink is still failing: the head stays.
    Failed,
}

impl Delivery {
    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Hands a batch that cannot be delivered to the dead-letter output, or counts it failed.
    async fn dead_letter(&self, reason: DeadReason, message: &str, batch: &Batch) {
        let n = batch.ends.len() as u64;
        let action = &*self.name;
        let Some(dead) = &self.dead_letter else {
            tracing::error!(
                action,
                messages = n,
                "batch not delivered ({}): {message}",
                reason.name()
            );
            self.metrics.failed.add(n);
            self.metrics.exceptions.record(message.to_string());
            return;
        };
        let mut dead = dead.lock().await;
        match dead.send(&self.rule, action, reason, message, batch).await {
            Ok(()) => {
                tracing::warn!(
                    action,
                    messages = n,
                    "batch sent to the {} ({}): {message}",
                    dead.describe(),
                    reason.name()
                );
                self.metrics.dead_lettered.add(n);
                self.metrics.exceptions.record(message.to_string());
            }
            Err(why) => {
                tracing::error!(
                    action,
                    messages = n,
                    "batch not delivered ({}: {message}) and the {} refused it: {why}",
                    reason.name(),
                    dead.describe()
                );
                self.metrics.failed.add(n);
                self.metrics
                    .exceptions
                    .record(format!("{message}; dead letter failed: {why}"));
            }
        }
    }

    /// Keeps a batch the sink could not take now; if the cache itself fails, dead-letters it.
    async fn cache_push(&self, batch: Batch, message: &str) {
        let Some(state) = &self.cache else {
            return self
                .dead_letter(DeadReason::Transient, message, &batch)
                .await;
        };
        let n = batch.ends.len() as u64;
        let mut state = state.lock().await;
        let was_empty = state.cache.is_empty();
        let kept = batch.clone();
        match state.cache.push(batch) {
            Ok(()) => {
                self.metrics.cached_total.add(n);
                self.metrics.set_cached(state.cache.len());
                tracing::debug!(
                    action = %self.name,
                    "cached {n} messages; {} in the cache, {} of them on disk",
                    state.cache.len(),
                    state.cache.disk_len()
                );
                if was_empty {
                    tracing::warn!(
                        action = %self.name,
                        "sink unavailable, caching its messages until it recovers: {message}"
                    );
                    state.next_resend = tokio::time::Instant::now() + self.resend_wait(0, &state);
                }
            }
            Err(e) => {
                drop(state);
                let why = format!("{message}; and the cache failed: {e}");
                self.dead_letter(DeadReason::Transient, &why, &kept).await;
            }
        }
    }

    fn resend_wait(&self, failures: u32, state: &CacheState) -> Duration {
        let interval = Duration::from_millis(state.cache.config().resend_interval_ms);
        if failures == 0 {
            interval
        } else {
            // Back off while the sink stays down, but probe at least once a second so the
            // cache drains soon after it recovers.
            interval.max(backoff(self.retry_interval, failures).min(MAX_RESEND_BACKOFF))
        }
    }

    /// True when the cache holds something (new batches then queue behind it, unless the
    /// alternate queue is on).
    async fn cache_state(&self) -> Option<(bool, bool, i8)> {
        let state = self.cache.as_ref()?.lock().await;
        let config = state.cache.config();
        Some((
            state.cache.is_empty(),
            state.cache.has_room(),
            if config.alter_queue {
                config.priority
            } else {
                i8::MIN
            },
        ))
    }

    /// When the next resend is due, if anything is cached.
    async fn next_resend(&self) -> Option<tokio::time::Instant> {
        let state = self.cache.as_ref()?.lock().await;
        (!state.cache.is_empty() && !state.resending).then_some(state.next_resend)
    }
}

/// Delivers batches to one connector, applying the outcome rules.
struct Deliverer {
    connector: Connector,
    shared: Arc<Delivery>,
}

impl Deliverer {
    /// Calls the sink until the batch is delivered or the outcome rules give up on it:
    /// transient errors are retried `retries` times with backoff, a trap replaces the
    /// instance and tries again, up to [`MAX_TRAPS_PER_BATCH`] times.
    async fn attempt(&mut self, batch: &Batch, retries: u32) -> Result<(), Undelivered> {
        let shared = Arc::clone(&self.shared);
        let metrics = &shared.metrics;
        let n = batch.ends.len() as u64;
        let action = &*shared.name;
        if let Some(reason) = self.connector.unavailable() {
            return Err(Undelivered {
                reason: DeadReason::Unavailable,
                message: format!("the sink is unavailable: {reason}"),
            });
        }
        let mut retried = 0u32;
        let mut traps = 0u32;
        loop {
            let started = Instant::now();
            let result = self.connector.collect(batch).await;
            metrics.batches.add(1);
            metrics
                .collect_time_ns
                .add(started.elapsed().as_nanos() as u64);
            let failure = match result {
                Ok(()) => {
                    metrics.records_out.add(n);
                    return Ok(());
                }
                Err(failure) => failure,
            };
            match failure {
                // While stopping, a cached action keeps the batch instead of waiting.
                CallFailure::Transient(message)
                    if retried < retries && !(shared.stopping() && shared.cache.is_some()) =>
                {
                    retried += 1;
                    metrics.retries.add(1);
                    let delay = backoff(shared.retry_interval, retried);
                    tracing::debug!(
                        action,
                        retry = retried,
                        ?delay,
                        "transient sink error, retrying: {message}"
                    );
                    if shared.cache.is_some() {
                        // A stop cuts the wait short: the batch then goes to the cache.
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            () = stopped(shared.stop.clone()) => {}
                        }
                    } else {
                        tokio::time::sleep(delay).await;
                    }
                }
                CallFailure::Trap(message) if traps + 1 < MAX_TRAPS_PER_BATCH => {
                    traps += 1;
                    metrics.restarts.add(1);
                    metrics.exceptions.record(format!("trapped: {message}"));
                    tracing::warn!(
                        action,
                        "sink instance trapped; replacing it and delivering the batch again: {message}"
                    );
                }
                CallFailure::Trap(message) => {
                    metrics.restarts.add(1);
                    return Err(Undelivered {
                        reason: DeadReason::Poison,
                        message: format!(
                            "poison batch: it trapped the sink {MAX_TRAPS_PER_BATCH} times; last: {message}"
                        ),
                    });
                }
                CallFailure::Transient(message) => {
                    return Err(Undelivered {
                        reason: DeadReason::Transient,
                        message: format!(
                            "transient error, gave up after {retried} retries: {message}"
                        ),
                    });
                }
                CallFailure::Rejected(message) => {
                    return Err(Undelivered {
                        reason: DeadReason::Rejected,
                        message: format!("rejected: {message}"),
                    });
                }
                CallFailure::InvalidConfig(message) => {
                    return Err(Undelivered {
                        reason: DeadReason::InvalidConfig,
                        message: format!("invalid config reported by collect: {message}"),
                    });
                }
            }
        }
    }

    /// Delivers a new batch: straight to the sink, or behind what is cached. Applies
    /// back-pressure while the cache is full.
    async fn deliver(&mut self, batch: &Batch) {
        if batch.ends.is_empty() {
            return;
        }
        let shared = Arc::clone(&self.shared);
        if let Some((empty, room, priority)) = shared.cache_state().await {
            if !room {
                self.wait_for_room().await;
            }
            if !empty {
                match priority {
                    // In order: behind the cache. Resend what is due meanwhile.
                    i8::MIN => {
                        while self.resend_one().await == Resend::Done {}
                        if shared
                            .cache_state()
                            .await
                            .is_some_and(|(empty, _, _)| !empty)
                        {
                            shared
                                .cache_push(batch.clone(), "queued behind the cache")
                                .await;
                            return;
                        }
                    }
                    1 => while self.resend_one().await == Resend::Done {},
                    0 => {
                        self.resend_one().await;
                    }
                    _ => {}
                }
            }
        }
        match self.attempt(batch, shared.retry_count).await {
            Ok(()) => {}
            Err(Undelivered {
                reason: DeadReason::Transient | DeadReason::Unavailable,
                message,
            }) if shared.cache.is_some() => {
                shared.metrics.exceptions.record(message.clone());
                shared.cache_push(batch.clone(), &message).await;
            }
            Err(Undelivered { reason, message }) => {
                shared.dead_letter(reason, &message, batch).await;
            }
        }
    }

    /// Back-pressure: resends until the cache has room again (or the run stops).
    async fn wait_for_room(&mut self) {
        let shared = Arc::clone(&self.shared);
        let mut warned = false;
        while !shared.stopping() {
            if shared.cache_state().await.is_none_or(|(_, room, _)| room) {
                return;
            }
            if !warned {
                warned = true;
                tracing::warn!(
                    action = %shared.name,
                    "the cache is full: holding new messages back until the sink recovers"
                );
            }
            match self.resend_one().await {
                Resend::Done => {}
                _ => {
                    let at = shared.next_resend().await;
                    tokio::select! {
                        () = sleep_until_or_soon(at) => {}
                        () = stopped(shared.stop.clone()) => {}
                    }
                }
            }
        }
    }

    /// Resends the oldest cached batch if it is due; it leaves the cache once delivered or
    /// dead-lettered.
    async fn resend_one(&mut self) -> Resend {
        let shared = Arc::clone(&self.shared);
        let Some(state) = &shared.cache else {
            return Resend::Idle;
        };
        let (mut batch, indicator) = {
            let mut state = state.lock().await;
            if state.resending || state.cache.is_empty() {
                return Resend::Idle;
            }
            if tokio::time::Instant::now() < state.next_resend {
                return Resend::NotDue;
            }
            let front = match state.cache.front() {
                Ok(Some(front)) => front,
                Ok(None) => return Resend::Idle,
                Err(e) => {
                    tracing::error!(action = %shared.name, "{e}");
                    shared.metrics.exceptions.record(e.to_string());
                    state.failures += 1;
                    state.next_resend =
                        tokio::time::Instant::now() + shared.resend_wait(state.failures, &state);
                    return Resend::Failed;
                }
            };
            state.resending = true;
            (front, state.cache.config().indicator_field.clone())
        };
        if let Some(field) = &indicator {
            mark_resent(&mut batch, field);
        }
        let outcome = self.attempt(&batch, 0).await;
        let mut state = state.lock().await;
        state.resending = false;
        let result = match outcome {
            Ok(()) => {
                shared.metrics.resent.add(batch.ends.len() as u64);
                Resend::Done
            }
            Err(Undelivered {
                reason: DeadReason::Transient | DeadReason::Unavailable,
                ..
            }) => {
                state.failures += 1;
                state.next_resend =
                    tokio::time::Instant::now() + shared.resend_wait(state.failures, &state);
                return Resend::Failed;
            }
            Err(Undelivered { reason, message }) => {
                drop(state);
                shared.dead_letter(reason, &message, &batch).await;
                state = shared.cache.as_ref().expect("checked above").lock().await;
                Resend::Done
            }
        };
        if let Err(e) = state.cache.pop_front() {
            // It was delivered but stays cached: it will be sent again (at least once).
            tracing::error!(action = %shared.name, "{e}");
            shared.metrics.exceptions.record(e.to_string());
        }
        state.failures = 0;
        state.next_resend = tokio::time::Instant::now() + shared.resend_wait(0, &state);
        shared.metrics.set_cached(state.cache.len());
        if state.cache.is_empty() {
            tracing::info!(action = %shared.name, "cache resent: the sink is caught up");
        }
        result
    }

    /// At the end of the input: resends what is cached, retrying like a batch (`retryCount`,
    /// `retryInterval`); what remains stays in the disk cache for the next run.
    async fn drain_cache(&mut self) {
        let shared = Arc::clone(&self.shared);
        if shared.cache.is_none() {
            return;
        }
        let mut failures = 0u32;
        loop {
            match self.resend_one().await {
                Resend::Done => failures = 0,
                Resend::Idle => return,
                Resend::Failed if shared.stopping() || failures >= shared.retry_count => return,
                Resend::Failed => failures += 1,
                Resend::NotDue => {
                    if shared.stopping() {
                        return;
                    }
                    let at = shared.next_resend().await;
                    sleep_until_or_soon(at).await;
                }
            }
        }
    }

    async fn close(&mut self) {
        if let Err(failure) = self.connector.close().await {
            tracing::error!(action = %self.shared.name, "close failed: {failure}");
            self.shared
                .metrics
                .exceptions
                .record(format!("close: {failure}"));
        }
    }
}

/// Completes when the run is stopping (never, for a run that cannot be stopped).
async fn stopped(mut stop: watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Sleeps until `at` (or a moment, without one).
async fn sleep_until_or_soon(at: Option<tokio::time::Instant>) {
    let at = at.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_millis(10));
    tokio::time::sleep_until(at).await;
}

/// Sets `field: true` in every JSON object of a resent batch (`resendIndicatorField`).
fn mark_resent(batch: &mut Batch, field: &str) {
    let mut out = empty_batch();
    out.header = batch.header.take();
    let mut start = 0usize;
    for (&end, &ts) in batch.ends.iter().zip(&batch.timestamps) {
        let bytes = &batch.payloads[start..end as usize];
        start = end as usize;
        let marked = match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(serde_json::Value::Object(mut map)) => {
                map.insert(field.to_string(), serde_json::Value::Bool(true));
                serde_json::to_vec(&map).ok()
            }
            Ok(serde_json::Value::Array(mut items)) => {
                for item in &mut items {
                    if let serde_json::Value::Object(map) = item {
                        map.insert(field.to_string(), serde_json::Value::Bool(true));
                    }
                }
                serde_json::to_vec(&items).ok()
            }
            _ => None,
        };
        push(&mut out, marked.as_deref().unwrap_or(bytes), ts);
    }
    *batch = out;
}

fn backoff(first: Duration, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(16);
    (first * factor).min(Duration::from_secs(30))
}

/// Largest opportunistic batch when `batchSize` is not set.
const MAX_DRAIN: usize = 4096;

/// Runs an action until the rule's channel closes: transform, batch, deliver (resending what
/// is cached), then drain the cache, close the sink instances and keep what is left on disk.
pub async fn run(started: StartedAction, mut rx: mpsc::Receiver<Chunk>) {
    let StartedAction {
        action,
        connectors,
        cache,
        dead_letter,
        stop,
    } = started;
    let common = action.common.clone();
    let metrics = Arc::clone(&action.metrics);
    let mut transformer = Transformer::new(common.clone(), action.send_nil);
    let shared = Arc::new(Delivery {
        rule: Arc::clone(&action.rule),
        name: Arc::clone(&action.name),
        metrics: Arc::clone(&metrics),
        retry_count: common.retry_count,
        retry_interval: Duration::from_millis(common.retry_interval_ms.max(1)),
        cache: cache.map(|cache| {
            tokio::sync::Mutex::new(CacheState {
                cache,
                resending: false,
                next_resend: tokio::time::Instant::now(),
                failures: 0,
            })
        }),
        dead_letter: dead_letter.map(tokio::sync::Mutex::new),
        stop,
    });
    let mut deliverers: Vec<Deliverer> = connectors
        .into_iter()
        .map(|connector| Deliverer {
            connector,
            shared: Arc::clone(&shared),
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
                        let resend_at = d.shared.next_resend().await;
                        tokio::select! {
                            next = async { rx.lock().await.recv().await } => {
                                let Some(batch) = next else { break };
                                d.deliver(&batch).await;
                            }
                            () = async {
                                match resend_at {
                                    Some(at) => tokio::time::sleep_until(at).await,
                                    None => std::future::pending().await,
                                }
                            } => {
                                d.resend_one().await;
                            }
                            // Idle, a new build that is ready takes over now.
                            () = d.connector.next_swap() => {}
                        }
                    }
                    d
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
        let resend_at = match &out.single {
            Some(single) => single.shared.next_resend().await,
            None => None,
        };
        let resend_due = async {
            match resend_at {
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
            () = resend_due => {
                if let Some(single) = out.single.as_mut() {
                    single.resend_one().await;
                }
                continue;
            }
            // Idle, a new build that is ready takes over now (otherwise at the next batch).
            () = idle_swap => continue,
        };
        let Some(mut chunk) = next else { break };
        loop {
            metrics.records_in.add(chunk.len() as u64);
            // Counted once per chunk: the loop below runs for every row.
            let mut payloads = 0u64;
            for message in chunk.iter() {
                clear(&mut scratch);
                let ts = message.timestamp_ms();
                let produced =
                    transformer.transform(message, &mut |p| push(&mut scratch, p, ts), &mut errors);
                metrics.omitted.add(u64::from(produced.omitted));
                payloads += u64::from(produced.payloads);
                for err in errors.drain(..) {
                    tracing::warn!(action = %action.name, "cannot build the payload: {err}");
                    payloads += 1;
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
            metrics.payloads.add(payloads);
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
    let mut finished: Vec<Deliverer> = out.single.take().into_iter().collect();
    drop(out.pool.take());
    for worker in workers {
        match worker.await {
            Ok(d) => finished.push(d),
            Err(e) => tracing::error!(action = %action.name, "a sink worker panicked: {e}"),
        }
    }
    if let Some(first) = finished.first_mut() {
        first.drain_cache().await;
    }
    for d in &mut finished {
        d.close().await;
    }
    if let Some(dead) = &shared.dead_letter {
        dead.lock().await.close().await;
    }
    if let Some(state) = &shared.cache {
        let mut state = state.lock().await;
        let cache = &mut state.cache;
        if cache.config().clean_at_stop {
            match cache.clear() {
                Ok(0) => {}
                Ok(n) => {
                    tracing::warn!(action = %action.name, messages = n, "cleanCacheAtStop: cached messages dropped");
                    metrics.failed.add(n);
                    metrics.exceptions.record(format!(
                        "{n} cached messages dropped at stop (cleanCacheAtStop)"
                    ));
                }
                Err(e) => tracing::error!(action = %action.name, "{e}"),
            }
        } else if let Err(e) = cache.persist() {
            tracing::error!(action = %action.name, "cached messages could not be written to disk: {e}");
            metrics.exceptions.record(e.to_string());
        }
        metrics.set_cached(cache.len());
        if !cache.is_empty() {
            tracing::warn!(
                action = %action.name,
                messages = cache.len(),
                "messages stay in the disk cache; the next run of the rule resends them first"
            );
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
