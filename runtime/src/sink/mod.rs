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
//!
//! This module resolves, validates and starts actions; the pipeline is in its parts:
//! `pipeline` runs an action (and its pool of instance workers), `batching` turns messages
//! into batches, `delivery` hands a batch to a sink and applies the outcome rules, `resend`
//! caches and resends, [`dead_letter`] is where undeliverable batches go.

mod batch;
mod batching;
pub mod cache;
mod connector;
pub mod cuts;
pub mod dead_letter;
mod delivery;
#[cfg(test)]
mod fake;
mod mqtt;
mod pipeline;
pub mod props;
mod resend;
pub mod sequence;
mod swap;
pub mod transform;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

pub use batch::{Batch, Iter as BatchIter};
pub use cache::{ActionCache, CacheConfig, CacheError};
pub use connector::{
    BUILTINS, Connector, ConnectorSpec, Phase, WasmSink, WasmSpec, dynamic_props, render_over,
};
pub use dead_letter::{DeadLetter, DeadReason};
pub use pipeline::run;
pub use props::{CommonProps, DeadLetterSpec, PayloadFormat, PropError};
pub use transform::{Produced, TransformError, Transformer};

use crate::backoff::Backoff;
use crate::checkpoint::ActionCheckpoint;
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

/// The longest wait between two retries of a batch.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(30);

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
    #[error("action `{action}`: {source}{hint}")]
    Grants {
        /// The action.
        action: String,
        /// Why.
        source: ManifestError,
        /// For a missing prop: which prop given looks like a misspelling of it (or empty).
        hint: String,
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
    /// A prop cuts batches in a way a replay cannot repeat, which the rule's `qos: 2` needs.
    #[error(
        "action `{action}`: prop `{option}`: {reason}, so the rule's qos 2 (exactly once) cannot \
         number its batches the same way after a restart; leave it unset or use qos 1"
    )]
    ExactlyOnce {
        /// The action.
        action: String,
        /// The prop.
        option: &'static str,
        /// What it does.
        reason: &'static str,
    },
    /// What the rule's checkpoint holds for the action cannot be used.
    #[error("action `{action}`: resuming from the rule's checkpoint: {message}")]
    Resume {
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
    /// Wasm actions park their instance until the first batch (see [`WasmSpec::park`]).
    pub park_until_first_batch: bool,
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
            park_until_first_batch: false,
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
            failure: match (failure, &self.spec) {
                // A sink refusing a prop that is a misspelt common one: say which was meant.
                (CallFailure::InvalidConfig(message), ConnectorSpec::Wasm(spec)) => {
                    CallFailure::InvalidConfig(
                        message + &props::common_key_hints(spec.raw_props.keys()),
                    )
                }
                (failure, _) => failure,
            },
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
            // Refused before the grants are resolved: a template in a prop that is not dynamic.
            dynamic_props(&own, &plugin.manifest.dynamic_props).map_err(|(prop, message)| {
                ActionError::Props {
                    action: name.clone(),
                    source: PropError { prop, message },
                }
            })?;
            let raw_props = own.clone();
            let mut grants =
                Grants::resolve(&plugin.manifest, &mut own, &rule.base_dir, prepare_fs).map_err(
                    |source| {
                        let missing = match &source {
                            ManifestError::PropNotAPath { prop, .. }
                            | ManifestError::BadNetProp { prop, .. } => {
                                Some(prop).filter(|p| !raw_props.contains_key(p.as_str()))
                            }
                            _ => None,
                        };
                        let hint = missing
                            .and_then(|prop| {
                                props::did_you_mean(prop, raw_props.keys().map(String::as_str)).map(
                                    |given| format!(" (given: `{given}`; did you mean `{prop}`?)"),
                                )
                            })
                            .unwrap_or_default();
                        ActionError::Grants {
                            action: name.clone(),
                            source,
                            hint,
                        }
                    },
                )?;
            // Evaluated on the props as the sink sees them (a templated path made absolute).
            let dynamic = dynamic_props(&own, &plugin.manifest.dynamic_props).map_err(
                |(prop, message)| ActionError::Props {
                    action: name.clone(),
                    source: PropError { prop, message },
                },
            )?;
            if let Some(explicit) = &common.grants {
                grants
                    .add_explicit(explicit, &rule.base_dir, prepare_fs)
                    .map_err(|source| ActionError::Grants {
                        action: name.clone(),
                        source,
                        hint: String::new(),
                    })?;
            }
            let checks = grant_checks(&plugin.manifest, &own, &dynamic, &grants);
            if prepare_fs {
                for line in grants.report() {
                    tracing::info!(rule = %rule.id, action = %name, "{line}");
                }
                for default in grants.refused_defaults() {
                    tracing::warn!(
                        rule = %rule.id,
                        action = %name,
                        "the manifest defaults prop `{}` to {}, which the rule does not grant: \
                         the sink may not reach it",
                        default.prop,
                        default.value
                    );
                }
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
                dynamic,
                checks,
                park: env.park_until_first_batch,
            })
        }
    };
    finish(rule, def, env, name, common, spec, prepare_fs).await
}

/// The checks of the templated props that the manifest's grants point at: URLs against the
/// action's HTTP grants, file paths against the folder their grant covers.
fn grant_checks(
    manifest: &crate::host::Manifest,
    props: &serde_json::Map<String, serde_json::Value>,
    dynamic: &connector::DynamicProps,
    grants: &Grants,
) -> connector::GrantChecks {
    let mut checks = Vec::new();
    for (prop, _) in dynamic {
        if manifest.grants.http.iter().any(|h| &h.prop == prop) {
            checks.push((
                prop.clone(),
                connector::GrantCheck::Http(grants.http.clone()),
            ));
        } else if manifest.grants.files.iter().any(|f| &f.prop == prop)
            && let Some((dir, _)) = props
                .get(prop)
                .and_then(serde_json::Value::as_str)
                .and_then(crate::host::templated_folder)
        {
            checks.push((prop.clone(), connector::GrantCheck::Folder(dir.to_string())));
        }
    }
    checks
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
    sequencer: Arc<sequence::Sequencer>,
    dead_letter: Option<DeadLetter>,
    stop: watch::Receiver<bool>,
    abort: watch::Receiver<bool>,
    barriers: Option<(usize, mpsc::UnboundedSender<BarrierAck>)>,
    drain_timeout: Option<Duration>,
    /// `qos: 2`: batches are numbered from the checkpoint.
    exactly_once: bool,
    /// The payloads of the batch the action was filling at the checkpoint it resumes from.
    pending: Batch,
    /// `qos: 2`, for a sink that numbers its batches: where the cuts not made by count are
    /// recorded.
    cuts: Option<cuts::CutLog>,
    /// What to replay: the cuts recorded from the checkpoint's next number on, and how far an
    /// earlier run may have cut by count.
    replay: cuts::Replay,
}

/// An action's acknowledgement of a barrier: its index in the rule and its numbering.
pub type BarrierAck = (usize, ActionCheckpoint);

/// What an action resumes from: the rule's `qos` and the action's part of the checkpoint.
#[derive(Debug, Default)]
pub struct Resume {
    /// The rule has `qos: 2`.
    pub exactly_once: bool,
    /// The action's numbering in the checkpoint the rule resumes from, if it has one.
    pub from: Option<ActionCheckpoint>,
    /// Under `qos: 2`: where the action records the batch cuts a replay must repeat (the
    /// rule's checkpoint store).
    pub cuts: Option<cuts::CutLog>,
}

/// Refuses, for a rule with `qos: 2`, the props that cut or order batches in a way a replay
/// after a crash cannot repeat (the sinks recognise a batch written before by its number).
pub fn check_exactly_once(action: &PreparedAction) -> Result<(), ActionError> {
    let refuse = |option, reason| ActionError::ExactlyOnce {
        action: action.name.to_string(),
        option,
        reason,
    };
    if action.common.concurrency > 1 {
        return Err(refuse(
            "concurrency",
            "several instances deliver batches out of order",
        ));
    }
    if action.common.cache.as_ref().is_some_and(|c| c.alter_queue) {
        return Err(refuse(
            "resendAlterQueue",
            "it delivers new batches before cached ones",
        ));
    }
    Ok(())
}

impl StartedAction {
    /// With checkpoints: an empty chunk from the rule is a barrier; the action acknowledges it
    /// on `acks` once every message it received before is delivered, dead-lettered, counted
    /// failed or written to its disk cache.
    /// The acknowledgement carries the action's `index` in the rule and its numbering.
    pub fn set_barrier_acks(&mut self, index: usize, acks: mpsc::UnboundedSender<BarrierAck>) {
        self.barriers = Some((index, acks));
    }

    /// At the end of the input, how long the action waits for a sink that is down before
    /// leaving what it could not deliver in its cache (by default it stops after `retryCount`
    /// failed resends).
    pub fn set_drain_timeout(&mut self, timeout: Duration) {
        self.drain_timeout = Some(timeout);
    }

    /// The action.
    pub fn action(&self) -> &PreparedAction {
        &self.action
    }

    /// Tells the action when the run is stopping (SIGINT/SIGTERM): it then stops waiting for
    /// a failing sink and keeps what it holds in its cache.
    pub fn set_stop(&mut self, stop: watch::Receiver<bool>) {
        self.stop = stop;
    }

    /// Tells the action when the stop's grace period is over (or a second signal came): it then
    /// gives up on the batch in the sink and on every batch after it, keeping them in its cache
    /// if it has one and counting them failed otherwise, and skips closing its sink.
    pub fn set_abort(&mut self, abort: watch::Receiver<bool>) {
        self.abort = abort;
    }
}

/// Opens an action's cache (counting what a previous run left in it) and its batch numbering,
/// starts its `concurrency` sink instances (configure, open) and its dead-letter output.
pub async fn start(action: PreparedAction) -> Result<StartedAction, ActionError> {
    start_from(action, Resume::default()).await
}

/// [`start`], resuming the numbering and the partial batch a checkpoint recorded: under
/// `qos: 2` the numbering continues at the checkpoint's number (before the sink instances are
/// opened, which are told it continues).
pub async fn start_from(
    action: PreparedAction,
    resume: Resume,
) -> Result<StartedAction, ActionError> {
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
    // The batch numbering is kept with the cache; without one each run numbers afresh.
    let sequencer = Arc::new(match &cache {
        Some(cache) => sequence::Sequencer::kept(cache.sequence_store()).map_err(|reason| {
            ActionError::Cache {
                action: action.name.to_string(),
                source: CacheError {
                    path: action.cache_path.clone().unwrap_or_default(),
                    reason: format!("batch sequence numbers: {reason}"),
                },
            }
        })?,
        None => sequence::Sequencer::fresh(),
    });
    let mut pending = Batch::new();
    if let Some(from) = &resume.from {
        for p in &from.pending {
            let bytes = p.bytes().ok_or_else(|| ActionError::Resume {
                action: action.name.to_string(),
                message: "a payload of its unfinished batch is not base64".into(),
            })?;
            pending.push(&bytes, p.ts);
        }
    }
    // A sink that numbers its batches skips one it wrote before: a replay must cut the same.
    let mut replay = cuts::Replay::default();
    let cuts = match resume.cuts {
        Some(log) if resume.exactly_once && action.spec.numbers_batches() => {
            let from = resume
                .from
                .as_ref()
                .filter(|from| from.exactly_once)
                .map(|from| from.next_sequence);
            let reader = log.clone();
            replay = tokio::task::spawn_blocking(move || reader.resume(from))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r)
                .map_err(|e| ActionError::Resume {
                    action: action.name.to_string(),
                    message: format!("the recorded batch cuts: {e}"),
                })?;
            if !replay.cuts.is_empty() {
                tracing::info!(action = %action.name, batches = replay.cuts.len(), "the batches cut after the checkpoint are cut again where they were");
            }
            Some(log)
        }
        _ => None,
    };
    if resume.exactly_once {
        match &resume.from {
            Some(from) if from.exactly_once => sequencer.pin(from.next_sequence, from.delivered),
            Some(_) => {
                tracing::warn!(action = %action.name, "the checkpoint was taken under qos 1: rows read again after it may be written twice; exactly once holds from the next checkpoint");
                sequencer.pin_here();
            }
            None => sequencer.pin_here(),
        }
    }
    let mut connectors = Vec::with_capacity(action.common.concurrency as usize);
    for i in 0..action.common.concurrency {
        let connector = action
            .spec
            .start(
                action.context(i),
                action.tag(i),
                &action.metrics,
                &sequencer,
            )
            .await
            .map_err(action.lifecycle_error())?;
        connectors.push(connector);
    }
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
                .start(
                    inner.context(0),
                    inner.tag(0),
                    &inner.metrics,
                    &Arc::new(sequence::Sequencer::fresh()),
                )
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
                backoff: Backoff::new(
                    Duration::from_millis(inner.common.retry_interval_ms.max(1)),
                    MAX_RETRY_BACKOFF,
                ),
            })
        }
    };
    Ok(StartedAction {
        action,
        connectors,
        cache,
        sequencer,
        dead_letter,
        stop: watch::channel(false).1,
        abort: watch::channel(false).1,
        barriers: None,
        drain_timeout: None,
        exactly_once: resume.exactly_once,
        pending,
        cuts,
        replay,
    })
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
