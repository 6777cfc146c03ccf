//! A run: load the rule file and stream definitions, compile each rule, prepare its actions,
//! then wire source -> rule -> actions with bounded channels and run until every bounded source
//! is exhausted (or the run is stopped), then flush and close every sink.
//!
//! [`validate`] does the same up to the point where anything would have a side effect: SQL is
//! compiled, sinks resolved and loaded, their props checked and `configure` called, files and
//! sockets left alone.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use crate::checkpoint::{
    AckLedger, ActionCheckpoint, Checkpoint, CheckpointStore, FileIdentity, FunctionsCheckpoint,
    HeldRow, Position, Positions, SourceCheckpoint,
};
use crate::clock::Clock;
use crate::host::{EngineError, HostConfig, SinkHost};
use crate::message::Message;
use crate::metrics::{ActionMetrics, RuleMetrics, SourceMetrics};
use crate::reload::{self, Reloader};
use crate::replay::{Replay, ReplayMerge, Step};
use crate::rule::{RestartStrategy, RuleDef, RuleError};
use crate::sink::{self, ActionEnv, ActionError, PreparedAction};
use crate::source::lookup_cache::CachedLookup;
use crate::source::memory::MemoryLookup;
use crate::source::redis::{RedisConf, RedisLookup, RedisTarget};
use crate::source::{self, MemoryBus, Resources, SharedSources, SourceContext, SourceError};
use crate::sql::{self, EvalCtx, Query, QueryRunner, SqlError};
use crate::stream::{DdlError, SourceType, StreamDef, parse_streams};
use crate::value::{Row, Value};

pub use crate::report::{ActionReport, RuleReport, RunReport};

/// What to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The rule files (rules, arrays of rules, rulesets, or folders of them).
    pub rule_paths: Vec<PathBuf>,
    /// Files of `CREATE STREAM` statements.
    pub stream_paths: Vec<PathBuf>,
    /// The plugins folder (`<dir>/sinks/*.wasm`).
    pub plugins_dir: PathBuf,
    /// Run only the rule with this id (of a ruleset).
    pub only_rule: Option<String>,
    /// Engine settings.
    pub host: HostConfig,
    /// Processing time.
    pub clock: Clock,
    /// Watch the plugins' `sinks/` folder and hot-reload modules that change (SIGHUP reloads
    /// changed modules with or without it).
    pub watch: bool,
    /// eKuiper's MQTT source configuration file (`default` and `CONF_KEY` sections).
    pub mqtt_conf: Option<PathBuf>,
    /// eKuiper's redis source configuration file, for redis lookup tables.
    pub redis_conf: Option<PathBuf>,
    /// Where actions keep their disk caches, and rules with `qos` 1 or 2 their checkpoints.
    pub data_dir: PathBuf,
    /// Log every rule's counters this often while the run goes on (they are also logged on
    /// SIGUSR1).
    pub progress_every: Option<Duration>,
    /// Forget the checkpoints of the rules run, and read their sources from the start.
    pub reset_checkpoints: bool,
    /// At the end of bounded input, how long an action whose sink is down waits for it before
    /// leaving its rows in the disk cache (`None`: it stops after `retryCount` failed resends).
    pub drain_timeout: Option<Duration>,
    /// Replay the input in its recorded processing time: each rule runs on a clock its rows
    /// move (see [`crate::replay`]).
    pub replay: Option<Replay>,
}

/// A run could not start (or a rule is invalid). Names the file, rule and field.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The rule file is wrong.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// The MQTT configuration file is wrong.
    #[error("{0}")]
    MqttConf(String),
    /// The redis configuration file is wrong.
    #[error("{0}")]
    RedisConf(String),
    /// A streams file cannot be read.
    #[error("{path}: cannot read: {source}")]
    StreamsFile {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A stream definition is wrong.
    #[error(transparent)]
    Stream(#[from] DdlError),
    /// A stream is defined in two places.
    #[error("stream `{name}` is defined twice: {first} and {second}")]
    DuplicateStream {
        /// The stream.
        name: String,
        /// First definition.
        first: String,
        /// Second definition.
        second: String,
    },
    /// The rule's SQL is wrong.
    #[error("{path}: rule `{rule}`: field `sql`: {source}")]
    Sql {
        /// The rule file.
        path: PathBuf,
        /// The rule.
        rule: String,
        /// What and where.
        source: SqlError,
    },
    /// A stream cannot be read.
    #[error("rule `{rule}`: {source}")]
    Source {
        /// The rule.
        rule: String,
        /// Why.
        source: SourceError,
    },
    /// An action cannot start.
    #[error("{path}: rule `{rule}`: {source}")]
    Action {
        /// The rule file.
        path: PathBuf,
        /// The rule.
        rule: String,
        /// Why.
        source: Box<ActionError>,
    },
    /// The wasm engine could not be built.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// `--rule` names no rule of the file.
    #[error("{path}: no rule with id `{id}` (the file has: {ids})")]
    NoSuchRule {
        /// The rule file.
        path: PathBuf,
        /// The id asked for.
        id: String,
        /// The ids it has.
        ids: String,
    },
    /// A rule's checkpoint cannot be used (a changed file, an unreadable store).
    #[error("rule `{rule}`: checkpoint: {message}")]
    Checkpoint {
        /// The rule.
        rule: String,
        /// Why.
        message: String,
    },
    /// A rule cannot be replayed in its recorded time.
    #[error("rule `{rule}`: --replay-time: {message}")]
    Replay {
        /// The rule.
        rule: String,
        /// Why.
        message: String,
    },
    /// Two rules read standard input (not as one SHARED stream).
    #[error(
        "rules `{first}` and `{second}` both read stdin; only one rule of a run can, unless they read one SHARED stream"
    )]
    StdinTwice {
        /// One rule.
        first: String,
        /// The other.
        second: String,
    },
}

/// The stream definitions of a run.
#[derive(Debug, Default)]
pub struct Catalog {
    streams: HashMap<String, Arc<StreamDef>>,
    /// MQTT broker settings for mqtt streams.
    mqtt: Arc<crate::mqtt::MqttConf>,
    /// Redis settings for redis lookup tables.
    redis: Arc<RedisConf>,
}

impl sql::Catalog for Catalog {
    fn stream(&self, name: &str) -> Option<&StreamDef> {
        self.streams
            .get(name)
            .or_else(|| {
                self.streams
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v)
            })
            .map(|s| s.as_ref())
    }
}

impl Catalog {
    /// For an unknown stream's error: where streams come from, and which this run knows.
    fn where_streams_come_from(&self) -> String {
        let mut known: Vec<&str> = self.streams.keys().map(String::as_str).collect();
        known.sort_unstable();
        let known = if known.is_empty() {
            "none is defined".to_string()
        } else {
            format!("defined: {}", known.join(", "))
        };
        format!(
            " ({known}; streams are given with `--streams FILE` (-s, a file of CREATE STREAM \
             statements) or in a ruleset's `streams`)"
        )
    }

    fn add(&mut self, def: StreamDef) -> Result<(), RunError> {
        if let Some(existing) = self.streams.get(def.name.as_ref()) {
            return Err(RunError::DuplicateStream {
                name: def.name.to_string(),
                first: existing.origin.clone(),
                second: def.origin,
            });
        }
        self.streams.insert(def.name.to_string(), Arc::new(def));
        Ok(())
    }

    fn get(&self, name: &str) -> Option<Arc<StreamDef>> {
        sql::Catalog::stream(self, name).and_then(|s| self.streams.get(s.name.as_ref()).cloned())
    }
}

/// A rule ready to run.
#[derive(Debug)]
pub struct PreparedRule {
    /// Its definition.
    pub def: RuleDef,
    /// Its compiled SQL.
    pub query: Query,
    /// The streams and tables it reads, by source index.
    pub streams: Vec<Arc<StreamDef>>,
    /// Its actions.
    pub actions: Vec<PreparedAction>,
}

/// Loads the rule file and the streams, and compiles every selected rule's SQL.
pub fn load(config: &RunConfig) -> Result<(Vec<RuleDef>, Catalog), RunError> {
    let file = crate::rule::load_all(&config.rule_paths)?;
    let mut catalog = Catalog::default();
    if let Some(path) = &config.mqtt_conf {
        catalog.mqtt = Arc::new(crate::mqtt::MqttConf::load(path).map_err(RunError::MqttConf)?);
    }
    if let Some(path) = &config.redis_conf {
        catalog.redis = Arc::new(RedisConf::load(path).map_err(RunError::RedisConf)?);
    }
    for path in &config.stream_paths {
        let text = std::fs::read_to_string(path).map_err(|source| RunError::StreamsFile {
            path: path.clone(),
            source,
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base = base.canonicalize().unwrap_or_else(|_| base.to_owned());
        for def in parse_streams(&text, &path.display().to_string(), &base)? {
            catalog.add(def)?;
        }
    }
    for def in file.streams {
        catalog.add(def)?;
    }
    let mut rules = file.rules;
    if let Some(id) = &config.only_rule {
        let ids = rules
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        rules.retain(|r| &r.id == id);
        if rules.is_empty() {
            return Err(RunError::NoSuchRule {
                path: config
                    .rule_paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
                    .into(),
                id: id.clone(),
                ids,
            });
        }
    }
    // `resourceId` and `connectionSelector` of `mqtt` actions: from the server's store.
    crate::serve::resolve_stored_refs(&config.data_dir, &mut rules)?;
    Ok((rules, catalog))
}

/// Compiles a rule that starts at `start_ms` (what its `rule_start()` gives) and prepares its
/// actions.
async fn prepare_rule(
    def: RuleDef,
    catalog: &Catalog,
    env: &ActionEnv,
    running: bool,
    start_ms: i64,
) -> Result<PreparedRule, RunError> {
    let rule = sql::RuleInfo {
        id: Arc::from(def.id.as_str()),
        start_ms,
    };
    let query = sql::compile_rule(&def.sql, catalog, &rule).map_err(|mut source| {
        if source.message.starts_with("unknown stream") {
            source.message.push_str(&catalog.where_streams_come_from());
        }
        RunError::Sql {
            path: def.path.clone(),
            rule: def.id.clone(),
            source,
        }
    })?;
    let sql_error = |message: String| RunError::Sql {
        path: def.path.clone(),
        rule: def.id.clone(),
        source: SqlError {
            line: 0,
            column: 0,
            message,
        },
    };
    let mut streams = Vec::with_capacity(query.sources.len());
    let resources = Resources::default()
        .with(Arc::clone(&catalog.mqtt))
        .with(Arc::clone(&catalog.redis));
    for src in &query.sources {
        let stream = catalog
            .get(&src.stream)
            .ok_or_else(|| sql_error(format!("unknown stream `{}`", src.stream)))?;
        source::check(&stream, &resources).map_err(|source| RunError::Source {
            rule: def.id.clone(),
            source,
        })?;
        if def.options.qos > 0 && !src.table {
            source::check_replayable(&stream, &resources, def.options.qos).map_err(|source| {
                RunError::Source {
                    rule: def.id.clone(),
                    source,
                }
            })?;
        }
        let source_type = stream.options.source_type;
        if src.lookup && !matches!(source_type, SourceType::Memory | SourceType::Redis) {
            return Err(sql_error(format!(
                "lookup table `{}`: rows are looked up in memory topics (TYPE=\"memory\", fed \
                 by memory actions with `table: true`) or redis (TYPE=\"redis\") only",
                stream.name
            )));
        }
        if src.lookup && source_type == SourceType::Memory && stream.options.key.is_none() {
            return Err(sql_error(format!(
                "lookup table `{}`: KEY is required (the field its rows are looked up by)",
                stream.name
            )));
        }
        if src.table && !source::of(&stream).is_some_and(|s| s.serves_tables()) {
            return Err(sql_error(format!(
                "table `{}`: a table cannot read from this source type ({:?}); use a file, \
                 memory or MQTT table",
                stream.name, stream.options.source_type
            )));
        }
        if def.options.is_event_time
            && query.window.is_some()
            && !src.table
            && stream.options.timestamp.is_none()
        {
            return Err(sql_error(format!(
                "the rule runs on event time (isEventTime) but stream `{}` has no TIMESTAMP field",
                stream.name
            )));
        }
        if def.options.is_event_time
            && !src.table
            && let (Some(ts), Some(columns)) = (&stream.options.timestamp, &stream.columns)
            && !columns.iter().any(|c| c.name.eq_ignore_ascii_case(ts))
        {
            return Err(sql_error(format!(
                "the rule runs on event time (isEventTime) on TIMESTAMP field `{ts}`, but stream \
                 `{}` ({}) does not declare a column `{ts}`: declare it (e.g. `{ts} BIGINT`) or \
                 leave the column list empty",
                stream.name, stream.origin
            )));
        }
        streams.push(stream);
    }
    if def.options.send_meta_to_sink && !query.can_send_meta_to_sink() {
        return Err(sql_error(
            "options.sendMetaToSink: it can not be applied to window (eKuiper's words): it sends \
             each row's metadata with that row's result, so it needs a statement over one \
             stream, without a window, GROUP BY or join"
                .into(),
        ));
    }
    let count_window = matches!(
        query.window.as_ref().map(|w| w.kind),
        Some(sql::WindowKind::Count { .. })
    );
    if def.options.qos > 0 && count_window {
        return Err(sql_error(format!(
            "COUNTWINDOW cannot be checkpointed in this version: the rule's qos {} needs \
             qos 0 or a time window",
            def.options.qos
        )));
    }
    if def.options.is_event_time && count_window {
        return Err(sql_error(
            "COUNTWINDOW counts rows as they arrive: it cannot run with isEventTime".into(),
        ));
    }
    let mut actions = Vec::with_capacity(def.actions.len());
    for action in &def.actions {
        let prepared = sink::prepare(&def, action, env, running)
            .await
            .map_err(|source| action_error(&def, source))?;
        if def.options.qos >= 2 {
            sink::check_exactly_once(&prepared).map_err(|source| action_error(&def, source))?;
        }
        actions.push(prepared);
    }
    Ok(PreparedRule {
        def,
        query,
        streams,
        actions,
    })
}

/// The run error for an action of `rule` that failed to prepare, validate or start.
fn action_error(rule: &RuleDef, source: ActionError) -> RunError {
    RunError::Action {
        path: rule.path.clone(),
        rule: rule.id.clone(),
        source: Box::new(source),
    }
}

/// What `validate` found.
#[derive(Debug, Default)]
pub struct ValidateReport {
    /// Per rule: its id, the stream it reads and its actions (`name -> sink`).
    pub rules: Vec<(String, String, Vec<String>)>,
    /// Things that are accepted but have no effect.
    pub warnings: Vec<String>,
    /// Per wasm action: its rule, its name and what it is granted.
    pub grants: Vec<(String, String, Arc<crate::host::Grants>)>,
}

/// Checks a rule file and its streams without running anything.
pub async fn validate(config: &RunConfig) -> Result<ValidateReport, RunError> {
    let (rules, catalog) = load(config)?;
    let host = SinkHost::shared(config.host.clone())?;
    let env = ActionEnv::new(host, config.plugins_dir.clone(), MemoryBus::new());
    let mut report = ValidateReport::default();
    check_stdin(&rules, &catalog)?;
    for def in rules {
        for option in &def.ignored_options {
            report.warnings.push(format!(
                "rule `{}`: option `{option}` is accepted for eKuiper compatibility and has no effect",
                def.id
            ));
        }
        let rule = prepare_rule(def, &catalog, &env, false, config.clock.now_ms()).await?;
        let mut actions = Vec::new();
        for action in &rule.actions {
            sink::validate(action)
                .await
                .map_err(|source| action_error(&rule.def, source))?;
            let target = match &action.spec {
                sink::ConnectorSpec::Wasm(spec) => format!(
                    "{} ({}, version {})",
                    action.plugin,
                    spec.plugin.path.display(),
                    spec.plugin.hash
                ),
                _ => format!("{} (built in)", action.plugin),
            };
            actions.push(format!("{} -> {target}", action.name));
            if let sink::ConnectorSpec::Wasm(spec) = &action.spec {
                report.grants.push((
                    rule.def.id.clone(),
                    action.name.to_string(),
                    Arc::clone(&spec.grants),
                ));
                actions.extend(spec.grants.report().iter().map(|line| format!("  {line}")));
                for default in spec.grants.refused_defaults() {
                    report.warnings.push(format!(
                        "rule `{}`: action `{}`: the manifest defaults prop `{}` to {}, which the \
                         rule does not grant: the sink may not reach it",
                        rule.def.id, action.name, default.prop, default.value
                    ));
                }
            }
        }
        report
            .rules
            .push((rule.def.id.clone(), stream_names(&rule.streams), actions));
    }
    Ok(report)
}

/// Only one reading of stdin per run: one rule, or the rules of one shared stream (`SHARED` not
/// `"false"`; in one time mode: event-time and processing-time rules read a shared stream
/// apart).
fn check_stdin(rules: &[RuleDef], catalog: &Catalog) -> Result<(), RunError> {
    /// A shared stream's reading: its name and time mode.
    type Sharing = Option<(Arc<str>, bool)>;
    let mut reader: Option<(&str, Sharing)> = None;
    for rule in rules {
        let Ok(query) = sql::compile(&rule.sql, catalog) else {
            continue;
        };
        let Some(stream) = catalog.get(query.stream()) else {
            continue;
        };
        if source::of(&stream).is_some_and(|s| s.reads_stdin()) {
            let sharing = (stream.options.shared != Some(false) && rule.options.qos == 0)
                .then(|| (Arc::clone(&stream.name), rule.options.is_event_time));
            if let Some((first, shared)) = &reader {
                if sharing.is_some() && *shared == sharing {
                    continue;
                }
                return Err(RunError::StdinTwice {
                    first: first.to_string(),
                    second: rule.id.clone(),
                });
            }
            reader = Some((&rule.id, sharing));
        }
    }
    Ok(())
}

/// Runs the rules of `config` until their sources end or `stop` completes; after a stop, the
/// actions deliver what they hold for as long as they need.
pub async fn run(
    config: &RunConfig,
    stop: impl Future<Output = ()>,
) -> Result<RunReport, RunError> {
    run_with_grace(config, stop, std::future::pending(), None).await
}

/// Runs the rules of `config` until their sources end or `stop` completes. After a stop the
/// actions deliver what they hold for at most `grace` (without limit when `None`), or until
/// `stop_now` completes; then each gives up on the batches it still holds: they stay in its
/// cache if it has one and are counted failed otherwise. The report is complete either way.
pub async fn run_with_grace(
    config: &RunConfig,
    stop: impl Future<Output = ()>,
    stop_now: impl Future<Output = ()>,
    grace: Option<Duration>,
) -> Result<RunReport, RunError> {
    run_observed(config, stop, stop_now, grace, |_, _| {}).await
}

/// [`run_with_grace`], calling `observe` once every rule is wired and running, with the live
/// counters of the run and the reloader of its sink modules (`oort serve` shows the first and
/// hands new plugin builds to the second).
pub async fn run_observed(
    config: &RunConfig,
    stop: impl Future<Output = ()>,
    stop_now: impl Future<Output = ()>,
    grace: Option<Duration>,
    observe: impl FnOnce(&RunReport, &Arc<Reloader>),
) -> Result<RunReport, RunError> {
    run_within(config, Surroundings::own(), stop, stop_now, grace, observe).await
}

/// Who listens to SIGHUP and SIGUSR1, and logs progress, while a run goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signals {
    /// The run itself (`oort run-rule`).
    Listen,
    /// Whoever started the run: `oort serve` listens once for all its rules (reloading every
    /// rule's modules on SIGHUP, logging every rule's counters on SIGUSR1), so an idle rule
    /// costs no listener and no task for them.
    Caller,
}

/// What a run shares with the process around it and the runs beside it.
#[derive(Clone)]
pub struct Surroundings {
    /// The memory topics, which other runs may share (`oort serve` gives all its rules one
    /// [`MemoryBus::lasting`], so rules chain through memory topics).
    pub bus: Arc<MemoryBus>,
    /// The shared readings of `SHARED` streams (`oort serve` gives all its rules one, so every
    /// rule on a shared stream reads the same reading of it).
    pub shared: Arc<SharedSources>,
    /// Who listens to the process's signals.
    pub signals: Signals,
    /// Wasm actions park their instance until their first batch, once it was created,
    /// configured and opened at start (`oort serve`: an idle rule then holds no instance).
    pub park_idle_sinks: bool,
}

impl Surroundings {
    /// A run of its own: its own memory topics and shared readings; it listens to signals.
    pub fn own() -> Self {
        Self {
            bus: MemoryBus::new(),
            shared: SharedSources::new(),
            signals: Signals::Listen,
            park_idle_sinks: false,
        }
    }
}

/// [`run_observed`] in `around`: memory topics, shared readings and signals as it says.
pub async fn run_within(
    config: &RunConfig,
    around: Surroundings,
    stop: impl Future<Output = ()>,
    stop_now: impl Future<Output = ()>,
    grace: Option<Duration>,
    observe: impl FnOnce(&RunReport, &Arc<Reloader>),
) -> Result<RunReport, RunError> {
    let Surroundings {
        bus,
        shared,
        signals,
        park_idle_sinks,
    } = around;
    let started = Instant::now();
    let (rules, catalog) = load(config)?;
    check_stdin(&rules, &catalog)?;
    let host = SinkHost::shared(config.host.clone())?;
    let mut env = ActionEnv::new(host.clone(), config.plugins_dir.clone(), Arc::clone(&bus));
    env.data_dir = config.data_dir.clone();
    env.park_until_first_batch = park_idle_sinks;
    // New builds of sink modules can always be loaded with SIGHUP; `watch` adds a file watcher.
    let reloader = Reloader::new(host.clone());
    env.reloader = Some(Arc::clone(&reloader));
    let mut prepared = Vec::with_capacity(rules.len());
    for def in rules {
        for option in &def.ignored_options {
            tracing::warn!(rule = %def.id, option, "option accepted for eKuiper compatibility; it has no effect");
        }
        // Boxed here and below: the futures of starting (several KiB each) would otherwise
        // size the run's future, which a server holds for as long as each rule runs.
        let rule = Box::pin(prepare_rule(
            def,
            &catalog,
            &env,
            true,
            config.clock.now_ms(),
        ))
        .await?;
        if let Some(replay) = &config.replay {
            check_replay(&rule, replay)?;
        }
        prepared.push(rule);
    }

    // Checkpoints of the rules with qos 1 or 2, checked before anything starts.
    let mut store = None;
    let mut restored = Vec::with_capacity(prepared.len());
    for rule in &prepared {
        if rule.def.options.qos == 0 {
            restored.push(None);
            continue;
        }
        let fail = |message: String| RunError::Checkpoint {
            rule: rule.def.id.clone(),
            message,
        };
        if store.is_none() {
            let opened =
                CheckpointStore::open(&config.data_dir).map_err(|e| fail(e.to_string()))?;
            store = Some(Arc::new(opened));
        }
        let Some(store) = store.as_ref() else {
            continue;
        };
        if config.reset_checkpoints {
            store
                .remove(&rule.def.id)
                .map_err(|e| fail(e.to_string()))?;
        }
        let last = store.load(&rule.def.id).map_err(|e| fail(e.to_string()))?;
        restored.push(Some(
            restore_plan(rule, Arc::clone(store), last).map_err(fail)?,
        ));
    }

    // Streams several rules read (without checkpoints, in one time mode): in a run, only those
    // are shared without `SHARED`.
    let mut readers: HashMap<(Arc<str>, bool), usize> = HashMap::new();
    for rule in prepared.iter().filter(|r| r.def.options.qos == 0) {
        for (src, stream) in rule.query.sources.iter().zip(&rule.streams) {
            if !src.table {
                *readers
                    .entry((Arc::clone(&stream.name), rule.def.options.is_event_time))
                    .or_default() += 1;
            }
        }
    }
    for ((stream, event_time), n) in readers {
        if n > 1 {
            shared.read_by_several(stream, event_time);
        }
    }

    // Start every sink before any source, so a sink that cannot open stops the run before a
    // row is read.
    let mut wired = Vec::with_capacity(prepared.len());
    for (rule, mut restored) in prepared.into_iter().zip(restored) {
        let mut started_actions = Vec::with_capacity(rule.actions.len());
        let mut resumed = restored
            .as_mut()
            .map(|plan| std::mem::take(&mut plan.actions))
            .unwrap_or_default()
            .into_iter();
        for action in rule.actions {
            let exactly_once = rule.def.options.qos >= 2;
            let resume = sink::Resume {
                exactly_once,
                from: resumed.next(),
                cuts: restored
                    .as_ref()
                    .filter(|_| exactly_once)
                    .map(|plan| plan.store.cut_log(&rule.def.id, &action.name)),
            };
            let started = Box::pin(sink::start_from(action, resume))
                .await
                .map_err(|source| action_error(&rule.def, source))?;
            started_actions.push(started);
        }
        wired.push((
            rule.def,
            rule.query,
            rule.streams,
            started_actions,
            restored,
        ));
    }

    let mut report = RunReport::default();
    let mut tasks = tokio::task::JoinSet::new();
    // Tells the actions the run is stopping, so none waits for a failing sink.
    let (stop_tx, stop_rx) = watch::channel(false);
    let (abort_tx, abort_rx) = watch::channel(false);
    let mut sources = Vec::new();
    // Every rule's query starts only once every rule's sources have subscribed, so a rule that
    // reads another's memory topic misses nothing the other publishes, however fast it runs.
    let mut queries = Vec::with_capacity(wired.len());
    let resources = Resources::default()
        .with(Arc::clone(&bus))
        .with(Arc::clone(&catalog.mqtt))
        .with(Arc::clone(&catalog.redis))
        .with(shared);
    for (def, query, streams, mut actions, restored) in wired {
        let source_metrics = Arc::new(SourceMetrics::default());
        let rule_metrics = Arc::new(RuleMetrics::default());
        let mut checkpointer = restored.map(|plan| {
            let (acks_tx, acks) = mpsc::unbounded_channel();
            for (index, started) in actions.iter_mut().enumerate() {
                started.set_barrier_acks(index, acks_tx.clone());
            }
            (plan, acks)
        });
        let mut action_txs = Vec::with_capacity(actions.len());
        let mut action_reports = Vec::with_capacity(actions.len());
        for mut started in actions {
            started.set_stop(stop_rx.clone());
            started.set_abort(abort_rx.clone());
            if let Some(timeout) = config.drain_timeout {
                started.set_drain_timeout(timeout);
            }
            let a = started.action();
            let capacity = (a.common.buffer_length / source::CHUNK_ROWS).max(1);
            let (tx, rx) = mpsc::channel(capacity);
            action_reports.push(ActionReport {
                name: a.name.to_string(),
                sink: a.plugin.clone(),
                metrics: Arc::clone(&a.metrics),
            });
            action_txs.push((tx, Arc::clone(&a.metrics)));
            tasks.spawn(sink::run(started, rx));
        }
        // `sendMetaToSink` sends the metadata of every row, read by the SQL or not.
        let reads_meta = query.reads_meta() || def.options.send_meta_to_sink;
        // A replayed rule has a clock of its own, which its rows move.
        let clock = match &config.replay {
            Some(_) => Clock::manual(0),
            None => config.clock.clone(),
        };
        let context = |stream: &Arc<StreamDef>, metrics: &Arc<SourceMetrics>| SourceContext {
            def: Arc::clone(stream),
            metrics: Arc::clone(metrics),
            clock: clock.clone(),
            event_time: def.options.is_event_time,
            resources: resources.clone(),
            rule: def.id.as_str().into(),
            positions: None,
            resume: None,
            reads: sql::FieldsRead::All,
            meta: reads_meta,
            interest: None,
        };
        // File tables are read whole before the streams start; the others are fed while the
        // rule runs (started here, before the streams, so they miss nothing published from now).
        let capacity = (def.options.buffer_length / source::CHUNK_ROWS).max(1);
        let mut tables = HashMap::new();
        let mut live_tables = Vec::new();
        let mut lookups = Vec::new();
        // Replayed, a file table takes its rows at their recorded times, among the streams'
        // (by source index: how many of its rows it keeps).
        let mut replayed_tables = HashMap::new();
        let mut feeds = Vec::new();
        for (index, src) in query.sources.iter().enumerate() {
            if !src.table {
                continue;
            }
            let stream = &streams[index];
            if src.lookup {
                let lookup =
                    open_lookup(stream, &catalog, &bus, &clock)
                        .await
                        .map_err(|message| RunError::Source {
                            rule: def.id.clone(),
                            source: SourceError {
                                stream: stream.name.to_string(),
                                origin: stream.origin.clone(),
                                message,
                            },
                        })?;
                lookups.push((index, lookup));
                continue;
            }
            if source::of(stream).is_some_and(|s| s.reads_tables_whole()) && config.replay.is_some()
            {
                let (row_tx, row_rx) = mpsc::channel(capacity);
                let ctx = context(stream, &source_metrics);
                let first = source::read(ctx.clone(), row_tx);
                feeds.push(Feed {
                    index,
                    ctx,
                    capacity,
                    first: Some((first, row_rx)),
                });
                // 0 is eKuiper's "not set": a file table keeps every row.
                let retain = stream
                    .options
                    .retain_size
                    .filter(|n| *n > 0)
                    .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
                replayed_tables.insert(index, retain);
            } else if source::of(stream).is_some_and(|s| s.reads_tables_whole()) {
                let rows = Box::pin(load_table(context(stream, &source_metrics))).await;
                tables.insert(index, Arc::new(rows));
            } else {
                let (row_tx, row_rx) = mpsc::channel(TABLE_CHUNKS);
                let ctx = context(stream, &source_metrics);
                let first = source::read(ctx.clone(), row_tx);
                live_tables.push(LiveTable {
                    feed: Feed {
                        index,
                        ctx,
                        capacity: TABLE_CHUNKS,
                        first: Some((first, row_rx)),
                    },
                    retain: stream
                        .options
                        .retain_size
                        .filter(|n| *n > 0)
                        .map_or(LIVE_TABLE_RETAIN, |n| {
                            usize::try_from(n).unwrap_or(usize::MAX)
                        }),
                });
            }
        }
        // A stream's messages are decoded only as far as the statement reads them.
        let mut reads = query.fields_read();
        if let (Some(replay), sql::FieldsRead::Only(names)) = (&config.replay, &mut reads) {
            names.insert(Arc::clone(&replay.field));
        }
        let replay = config.replay.as_ref().map(|replay| {
            let streams = query
                .sources
                .iter()
                .zip(&streams)
                .enumerate()
                .map(|(index, (src, stream))| {
                    let name = Arc::clone(&stream.name);
                    match replayed_tables.get(&index) {
                        Some(retain) => Some((name, Some(*retain))),
                        None => (!src.table).then_some((name, None)),
                    }
                })
                .collect();
            (
                ReplayMerge::new(Arc::clone(&replay.field), streams),
                i64::try_from(replay.after.as_millis()).unwrap_or(i64::MAX),
            )
        });
        // A stream's reading hands its chunks straight to the query: its channel also holds the
        // three chunks the feed's hop and the query's input used to hold between them, so the
        // reading stops for the query no more often than it did.
        let stream_capacity = capacity + 3;
        for (index, src) in query.sources.iter().enumerate() {
            if !src.table {
                let (row_tx, row_rx) = mpsc::channel(stream_capacity);
                let mut ctx = context(&streams[index], &source_metrics);
                ctx.reads = reads.clone();
                if let Some((plan, _)) = &checkpointer
                    && let Some(Some((positions, at))) = plan.sources.get(index)
                {
                    ctx.positions = Some(Arc::clone(positions));
                    ctx.resume = Some(at.position);
                }
                // Started here, before any row is read elsewhere: a subscription made now
                // misses nothing published from now on.
                let first = source::read(ctx.clone(), row_tx);
                feeds.push(Feed {
                    index,
                    ctx,
                    capacity: stream_capacity,
                    first: Some((first, row_rx)),
                });
            }
        }
        let (inputs_done, inputs_ended) = oneshot::channel::<()>();
        sources.push(inputs_ended);
        let runner = match &mut checkpointer {
            None => QueryRunner::new(
                query,
                def.options.is_event_time,
                def.options.late_tolerance_ms as i64,
                tables,
            ),
            Some((plan, _)) => {
                let mut runner = QueryRunner::checkpointable(
                    query,
                    def.options.is_event_time,
                    def.options.late_tolerance_ms as i64,
                    tables,
                );
                let held: Vec<(usize, Row)> = plan.held.drain(..).map(|h| h.row()).collect();
                if !held.is_empty() {
                    tracing::info!(rule = %def.id, rows = held.len(), "restoring the window's rows from the checkpoint");
                }
                let ctx = EvalCtx {
                    now_ms: config.clock.now_ms(),
                    meta: &Value::Null,
                };
                match plan.functions.take() {
                    // Checked against the statement when the plan was made.
                    Some(functions) => {
                        if let Err(message) = runner.restore_with(held, functions.state(), &ctx) {
                            return Err(RunError::Checkpoint {
                                rule: def.id.clone(),
                                message,
                            });
                        }
                    }
                    None => runner.restore(held, &ctx),
                }
                runner
            }
        };
        let mut runner = lookups.into_iter().fold(runner, |runner, (index, lookup)| {
            runner.with_lookup(index, lookup)
        });
        runner.set_send_meta(def.options.send_meta_to_sink);
        let checkpointer = checkpointer.map(|(plan, acks)| Checkpointer {
            store: plan.store,
            rule: def.id.clone(),
            interval: Duration::from_millis(def.options.checkpoint_interval_ms.max(1)),
            sources: plan.sources,
            wanted: plan.wanted,
            acks,
            first: plan.first && def.options.qos >= 2,
        });
        queries.push(run_query(
            runner,
            feeds,
            action_txs,
            Arc::clone(&rule_metrics),
            clock,
            QueryTask {
                rule: def.id.clone(),
                send_error: def.options.send_error,
                tables: live_tables,
                checkpointer,
                restart: def.options.restart.clone(),
                stop: stop_rx.clone(),
                inputs_done,
                replay,
                fire_at_end: def.options.fire_at_end,
            },
        ));
        report.rules.push(RuleReport {
            id: def.id.clone(),
            stream: stream_names(&streams),
            source: source_metrics,
            rule: rule_metrics,
            actions: action_reports,
            fire_at_end: def.options.fire_at_end,
        });
    }
    for query in queries {
        tasks.spawn(query);
    }
    drop(env);
    drop(bus);
    drop(resources);

    observe(&report, &reloader);

    // Hot reload: listen for SIGHUP, and watch the modules if asked, for as long as the run lasts.
    let mut _watch = None;
    if config.watch {
        let dir = config.plugins_dir.join("sinks");
        match reload::watch(&dir, Arc::clone(&reloader)) {
            Ok(guard) => _watch = Some(guard),
            Err(err) => tracing::error!("{err}; reload with SIGHUP instead"),
        }
    }
    let mut sighup = None;
    let mut progress = None;
    if signals == Signals::Listen {
        sighup = reload::on_sighup(Arc::clone(&reloader));
        progress = Some(tokio::spawn(report_progress(
            report.rules.clone(),
            started,
            config.progress_every,
            listen_usr1(),
        )));
    }

    // Sources run until their input ends; stopping drops them, which closes their channels and
    // lets every downstream stage drain and close in order.
    let all_sources = async move {
        for ended in sources {
            let _ = ended.await;
        }
    };
    tokio::pin!(stop);
    tokio::select! {
        () = all_sources => tracing::info!("the input has ended; the actions deliver what they hold"),
        () = &mut stop => {
            report.interrupted = true;
            let _ = stop_tx.send(true);
            tracing::info!(grace = ?grace, "stopping: sources closed, draining the actions (a second signal stops at once)");
        }
    }
    // After a stop (now, or while the actions drain after the input ended): the grace period,
    // cut short by a second signal.
    let interrupted = report.interrupted;
    let stop_tx = &stop_tx;
    let give_up = async move {
        if !interrupted {
            stop.await;
            let _ = stop_tx.send(true);
            tracing::info!(grace = ?grace, "stopping: draining the actions (a second signal stops at once)");
        }
        let grace_over = async {
            match grace {
                Some(grace) => tokio::time::sleep(grace).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = grace_over => tracing::warn!("stopping: the grace period is over; undelivered batches stay cached or count as failed"),
            () = stop_now => tracing::warn!("stopping now: undelivered batches stay cached or count as failed"),
        }
    };
    tokio::pin!(give_up);
    let mut gave_up = false;
    loop {
        tokio::select! {
            result = tasks.join_next() => match result {
                Some(Err(e)) => tracing::error!("a rule task failed: {e}"),
                Some(Ok(())) => {}
                None => break,
            },
            () = &mut give_up, if !gave_up => {
                gave_up = true;
                let _ = abort_tx.send(true);
            }
        }
    }
    for task in [sighup, progress].into_iter().flatten() {
        task.abort();
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Logs every rule's counters every `every` (if given) and on each SIGUSR1, until aborted:
/// an unbounded run shows how it goes without waiting for its end.
async fn report_progress(
    rules: Vec<RuleReport>,
    started: Instant,
    every: Option<Duration>,
    #[cfg(unix)] mut usr1: Option<tokio::signal::unix::Signal>,
    #[cfg(not(unix))] _usr1: Option<()>,
) {
    let mut tick = every.map(|every| {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick
    });
    loop {
        let ticked = async {
            match tick.as_mut() {
                Some(tick) => {
                    tick.tick().await;
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(unix)]
        let signalled = async {
            match usr1.as_mut() {
                Some(usr1) => {
                    usr1.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let signalled = std::future::pending::<()>();
        tokio::select! {
            () = ticked => {}
            () = signalled => {}
        }
        for line in crate::report::progress_lines(&rules, started.elapsed()) {
            tracing::info!("{line}");
        }
    }
}

/// Listens for SIGUSR1; started before any row is read, since unhandled it would kill.
#[cfg(unix)]
pub(crate) fn listen_usr1() -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
        .map_err(|e| tracing::warn!("cannot listen for SIGUSR1: {e}"))
        .ok()
}

/// SIGUSR1 does not exist here.
#[cfg(not(unix))]
pub(crate) fn listen_usr1() -> Option<()> {
    None
}

/// The lookup table over `stream` (`KIND="lookup"`), ready to answer: a redis table is
/// connected first (a server out of reach stops the rule from starting, as in eKuiper), and
/// put behind its lookup cache when its configuration asks for one.
async fn open_lookup(
    stream: &Arc<StreamDef>,
    catalog: &Catalog,
    bus: &Arc<MemoryBus>,
    clock: &Clock,
) -> Result<Arc<dyn sql::Lookup>, String> {
    if stream.options.source_type != SourceType::Redis {
        return Ok(Arc::new(MemoryLookup {
            bus: Arc::clone(bus),
            topic: stream.options.datasource.clone(),
        }));
    }
    let target = RedisTarget::of(stream, &catalog.redis)?;
    let cache = target.cache;
    let lookup = Arc::new(RedisLookup::new(stream, target, clock.clone()));
    let opening = Arc::clone(&lookup);
    tokio::task::spawn_blocking(move || opening.open())
        .await
        .map_err(|e| format!("connecting to redis failed: {e}"))??;
    Ok(match cache {
        Some(options) => Arc::new(CachedLookup::new(lookup, options, clock.clone())),
        None => lookup,
    })
}

fn stream_names(streams: &[Arc<StreamDef>]) -> String {
    streams
        .iter()
        .map(|s| s.name.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Pushes a chunk's rows into the query; with `sendError`, each message of it that could not
/// be decoded becomes an error message where it came among the rows' results (as eKuiper's
/// decoder sends its errors down the rule).
fn push_chunk(
    runner: &mut QueryRunner,
    index: usize,
    mut chunk: source::Chunk,
    ctx: &EvalCtx<'_>,
    out: &mut Vec<Message>,
    send_error: bool,
) -> sql::Outcome {
    if !send_error || chunk.errors.is_empty() {
        // The rows of a shared source are read in place when the statement allows it.
        return match Arc::try_unwrap(chunk.rows) {
            Ok(rows) => runner.push(index, rows, ctx, out),
            Err(shared) => runner.push_shared(index, &shared, ctx, out),
        };
    }
    let mut outcome = sql::Outcome::default();
    let mut push = |rows: Vec<Row>, out: &mut Vec<Message>| {
        if !rows.is_empty() {
            let o = runner.push(index, rows, ctx, out);
            outcome.errors.extend(o.errors);
            outcome.filtered += o.filtered;
        }
    };
    let errors = std::mem::take(&mut chunk.errors);
    let mut rows = chunk.into_rows().into_iter();
    let mut done = 0;
    for (at, message) in errors {
        push(rows.by_ref().take(at - done).collect(), out);
        done = at;
        out.push(Message::Error {
            message: Arc::from(message),
            timestamp_ms: 0,
        });
    }
    push(rows.collect(), out);
    outcome
}

/// Reads a table's rows whole (its source runs to the end of its file).
async fn load_table(ctx: SourceContext) -> Vec<Row> {
    let (tx, mut rx) = mpsc::channel(16);
    // 0 is eKuiper's "not set".
    let retain = ctx
        .def
        .options
        .retain_size
        .filter(|n| *n > 0)
        .map(|n| n as usize);
    let reader = tokio::spawn(source::start(ctx, tx));
    let mut rows = Vec::new();
    while let Some(chunk) = rx.recv().await {
        rows.extend(chunk.into_rows());
    }
    if let Err(e) = reader.await {
        tracing::error!("reading a table failed: {e}");
    }
    if let Some(keep) = retain
        && rows.len() > keep
    {
        rows.drain(..rows.len() - keep);
    }
    rows
}

/// Chunks in flight between a table fed while the rule runs and the rule: the table's reader
/// waits when they are all taken (it never makes the rule's streams wait).
const TABLE_CHUNKS: usize = 4;

/// The rows a table fed while the rule runs keeps without `RETAIN_SIZE`: the latest one, as in
/// eKuiper.
const LIVE_TABLE_RETAIN: usize = 1;

/// A table fed while the rule runs (a memory or MQTT topic): its reading, and how many of its
/// latest rows it keeps (`RETAIN_SIZE`).
struct LiveTable {
    feed: Feed,
    retain: usize,
}

/// What the rule task receives: rows from one of its sources, the channel of a stream's
/// reading (the rule task then takes its chunks from the reader itself), the end of one, or its
/// failure (answered with how it starts again, or `None` when the rule stops).
enum Input {
    Rows(usize, source::Chunk),
    Attach(usize, mpsc::Receiver<source::Chunk>),
    End(usize),
    Failed {
        index: usize,
        message: String,
        reply: oneshot::Sender<Option<Restart>>,
    },
}

/// The channels of the streams' readings the query stage takes chunks from itself.
#[derive(Default)]
struct Attached {
    /// Each with its source's index, in the order they came.
    readings: Vec<(usize, mpsc::Receiver<source::Chunk>)>,
    /// Where the next look starts: each reading is looked at first in turn, so none waits
    /// behind another that always has a chunk.
    turn: usize,
}

impl Attached {
    /// Whether a reading of source `index` is attached.
    fn has(&self, index: usize) -> bool {
        self.readings.iter().any(|(i, _)| *i == index)
    }

    /// Detaches the reading of source `index`.
    fn take(&mut self, index: usize) -> Option<mpsc::Receiver<source::Chunk>> {
        let at = self.readings.iter().position(|(i, _)| *i == index)?;
        Some(self.readings.remove(at).1)
    }

    /// The next chunk of any reading (with its source's index). A reading whose channel has
    /// closed is dropped; its source's `End` or `Failed` follows through the stage's channel.
    /// Pending for as long as none is attached.
    async fn next(&mut self) -> (usize, source::Chunk) {
        std::future::poll_fn(|cx| {
            let n = self.readings.len();
            let mut found = None;
            let mut closed = Vec::new();
            // Every reading is looked at (and wakes this stage) unless a chunk is found.
            for k in 0..n {
                let at = (self.turn + k) % n;
                let (index, rows) = &mut self.readings[at];
                match rows.poll_recv(cx) {
                    std::task::Poll::Ready(Some(chunk)) => {
                        found = Some((*index, chunk));
                        self.turn = at + 1;
                        break;
                    }
                    std::task::Poll::Ready(None) => closed.push(at),
                    std::task::Poll::Pending => {}
                }
            }
            closed.sort_unstable();
            for at in closed.into_iter().rev() {
                self.readings.remove(at);
            }
            match found {
                Some(found) => std::task::Poll::Ready(found),
                None => std::task::Poll::Pending,
            }
        })
        .await
    }
}

/// How a failed source starts again.
struct Restart {
    /// After this long.
    delay: Duration,
    /// From there (`None`: from the start of its input).
    resume: Option<Position>,
}

/// One source of a rule: how to start it again, and its first reading, started already.
struct Feed {
    /// The source's index in the rule.
    index: usize,
    /// Its context (`resume` is updated at each restart).
    ctx: SourceContext,
    /// Chunks in flight between the source and the rule.
    capacity: usize,
    /// The reading started with the rule, and its chunks.
    first: Option<(source::Reading, mpsc::Receiver<source::Chunk>)>,
}

/// Completes once `flag` is raised (never, if its sender is gone without raising it).
async fn raised(flag: &mut watch::Receiver<bool>) {
    if flag.wait_for(|up| *up).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// How a source's chunks reach the query stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handing {
    /// The feed passes each chunk on through the stage's channel of tables.
    Forward,
    /// The feed hands the stage the reading's own channel (`Input::Attach`), and the stage
    /// takes the chunks from it: a chunk wakes one task, not two.
    Attach,
}

/// Runs one source of a rule and hands its chunks to the query stage (`handing`): at its end,
/// sends `End` (after the last chunk: an attached channel is drained first); when it fails,
/// asks the query stage whether to start it again (after the rule's `restartStrategy` wait,
/// from where the query stage says) or to give up. A stop of the run (`stop`) or of the rule
/// (`halt`) ends it without a restart.
async fn feed(
    mut feed: Feed,
    tx: mpsc::Sender<Input>,
    mut stop: watch::Receiver<bool>,
    mut halt: watch::Receiver<bool>,
    handing: Handing,
) {
    let index = feed.index;
    loop {
        let (reading, rows) = match feed.first.take() {
            Some(first) => first,
            None => {
                let (row_tx, row_rx) = mpsc::channel(feed.capacity);
                (source::read_again(feed.ctx.clone(), row_tx), row_rx)
            }
        };
        let mut reading = tokio::spawn(reading);
        let mut stopping = false;
        let mut ended = None;
        match handing {
            Handing::Forward => {
                let mut rows = rows;
                loop {
                    tokio::select! {
                        chunk = rows.recv() => match chunk {
                            Some(chunk) => {
                                if tx.send(Input::Rows(index, chunk)).await.is_err() {
                                    reading.abort();
                                    return;
                                }
                            }
                            None => break,
                        },
                        () = raised(&mut stop), if !stopping => {
                            stopping = true;
                            reading.abort();
                        }
                        () = raised(&mut halt), if !stopping => {
                            stopping = true;
                            reading.abort();
                        }
                    }
                }
            }
            Handing::Attach => {
                if tx.send(Input::Attach(index, rows)).await.is_err() {
                    reading.abort();
                    return;
                }
                // The reading ends by itself, or is cut short by a stop; what it sent stays in
                // its channel for the stage to take before the `End` or `Failed` sent below.
                tokio::select! {
                    result = &mut reading => ended = Some(result),
                    () = raised(&mut stop) => {
                        stopping = true;
                        reading.abort();
                    }
                    () = raised(&mut halt) => {
                        stopping = true;
                        reading.abort();
                    }
                }
            }
        }
        let result = match ended {
            Some(result) => result,
            None => (&mut reading).await,
        };
        let failure = match result {
            Ok(Ok(())) => None,
            Ok(Err(message)) => Some(message),
            Err(e) if e.is_panic() => Some(format!("the source panicked: {e}")),
            // Cancelled: the run or the rule is stopping.
            Err(_) => None,
        };
        let Some(message) = failure else { break };
        tracing::error!(stream = %feed.ctx.def.name, "source failed: {message}");
        if stopping {
            break;
        }
        let (reply, answer) = oneshot::channel();
        if tx
            .send(Input::Failed {
                index,
                message,
                reply,
            })
            .await
            .is_err()
        {
            return;
        }
        let Ok(Some(restart)) = answer.await else {
            break;
        };
        tokio::select! {
            () = tokio::time::sleep(restart.delay) => {}
            () = raised(&mut stop) => break,
            () = raised(&mut halt) => break,
        }
        if let Some(positions) = &feed.ctx.positions {
            positions.clear();
        }
        feed.ctx.resume = restart.resume;
    }
    let _ = tx.send(Input::End(index)).await;
}

/// What the query stage of a rule is besides its inputs and outputs.
struct QueryTask {
    /// The rule's id.
    rule: String,
    /// `sendError`.
    send_error: bool,
    /// Its tables fed while it runs.
    tables: Vec<LiveTable>,
    /// With qos 1 or 2.
    checkpointer: Option<Checkpointer>,
    /// How a failed source is started again.
    restart: RestartStrategy,
    /// Raised when the run stops.
    stop: watch::Receiver<bool>,
    /// `fireAtEnd`: the end of the input fires the windows still open and releases the rows
    /// the watermark holds (by default nothing more is sent, as in eKuiper).
    fire_at_end: bool,
    /// Told when every source has ended (or the rule gave up).
    inputs_done: oneshot::Sender<()>,
    /// Replaying in recorded time: the streams' merge, and how far (ms) the clock runs on past
    /// the last row at the end of the input.
    replay: Option<(ReplayMerge, i64)>,
}

/// The rule's query stage: takes rows from its sources, runs them through the statement
/// (windows fire on the clock in processing time), and fans the results out to the actions.
///
/// A source that fails is started again by the rule's `restartStrategy`, while the query's
/// state stays as it is: with checkpoints (qos 1 or 2) a checkpoint is taken first and the
/// source resumes at the position of the last row the query took (nothing lost, nothing read
/// twice); without, it starts again from the start of its input. Once the restarts are used
/// up, the rule stops (its other sources too) as at a stop of the run, with the last error.
async fn run_query(
    mut runner: QueryRunner,
    feeds: Vec<Feed>,
    actions: Vec<(mpsc::Sender<sink::Chunk>, Arc<ActionMetrics>)>,
    metrics: Arc<RuleMetrics>,
    clock: Clock,
    task: QueryTask,
) {
    let QueryTask {
        rule,
        send_error,
        tables,
        mut checkpointer,
        restart,
        stop,
        inputs_done,
        mut replay,
        fire_at_end,
    } = task;
    runner.set_fire_at_end(fire_at_end);
    // A statement that calls `delay` sleeps in its evaluations: the rule's stop cuts a sleep
    // short (the row is not sent), so a stop never waits on a delay.
    let sleeps = runner.query().sleeps.then(sql::Interrupt::new);
    let _cut_at_stop = sleeps.as_ref().map(|interrupt| {
        let interrupt = interrupt.clone();
        let mut stop = stop.clone();
        AbortOnDrop(tokio::spawn(async move {
            if stop.wait_for(|stopped| *stopped).await.is_ok() {
                interrupt.trip();
            }
        }))
    });
    let (merged_tx, mut merged) = mpsc::channel::<Input>(feeds.len().max(1) * 2);
    let (halt_tx, halt_rx) = watch::channel(false);
    // Owned here: if the rule's task is dropped, its sources stop with it.
    let mut feeders = tokio::task::JoinSet::new();
    for one in feeds {
        feeders.spawn(feed(
            one,
            merged_tx.clone(),
            stop.clone(),
            halt_rx.clone(),
            Handing::Attach,
        ));
    }
    // The streams' readings whose chunks this stage takes itself, and one whose `End` or
    // `Failed` came: its chunks are taken first, then that input.
    let mut attached = Attached::default();
    let mut draining: Option<(usize, mpsc::Receiver<source::Chunk>, Input)> = None;
    drop(merged_tx);
    // Tables have a channel of their own: the rule ends with its streams, whatever its tables
    // do, and the loop below takes from both as they come (neither waits for the other).
    let (table_tx, mut table_input) = mpsc::channel::<Input>(tables.len().max(1) * 2);
    let mut retain = HashMap::new();
    let mut table_feeders = tokio::task::JoinSet::new();
    for table in tables {
        retain.insert(table.feed.index, table.retain);
        table_feeders.spawn(feed(
            table.feed,
            table_tx.clone(),
            stop.clone(),
            halt_rx.clone(),
            Handing::Forward,
        ));
    }
    drop(table_tx);
    let mut fanout = Fanout {
        actions,
        open: Vec::new(),
        rule,
    };
    fanout.open = vec![true; fanout.actions.len()];
    let mut ticker = checkpointer.as_ref().map(|c| {
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + c.interval, c.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    });
    let wanted = checkpointer.as_ref().map(|c| Arc::clone(&c.wanted));
    // However the query stage ends (its task dropped too), its sources learn that no more
    // checkpoints come, so a stopped source's session never waits for one.
    let _last = LastCheckpoint(
        checkpointer
            .iter()
            .flat_map(|c| c.sources.iter().flatten())
            .map(|(positions, _)| Arc::clone(positions))
            .collect(),
    );
    // Late rows already added to `metrics.late`.
    let mut late_counted = 0u64;
    if let Some(checkpointer) = checkpointer.as_mut()
        && checkpointer.first
    {
        checkpointer.take(&mut runner, &mut fanout).await;
    }
    loop {
        // A replay fires its windows as its rows move the clock.
        let deadline = runner.next_deadline().filter(|_| replay.is_none());
        let tick = async {
            match (ticker.as_mut(), &wanted) {
                (Some(ticker), Some(wanted)) => {
                    tokio::select! {
                        _ = ticker.tick() => {}
                        () = wanted.notified() => {}
                    }
                }
                _ => std::future::pending().await,
            }
        };
        let input = if let Some((index, rows, _)) = draining.as_mut() {
            match rows.recv().await {
                Some(chunk) => Some(Input::Rows(*index, chunk)),
                None => draining.take().map(|(_, _, input)| input),
            }
        } else {
            tokio::select! {
                input = merged.recv() => input,
                (index, chunk) = attached.next() => Some(Input::Rows(index, chunk)),
                Some(input) = table_input.recv() => match input {
                    Input::Rows(index, chunk) => {
                        let keep = retain.get(&index).copied().unwrap_or(LIVE_TABLE_RETAIN);
                        runner.table_rows(index, chunk.into_rows(), keep);
                        continue;
                    }
                    // The table keeps what it holds.
                    Input::End(_) => continue,
                    failed @ Input::Failed { .. } => Some(failed),
                    Input::Attach(..) => unreachable!("a table's feed forwards its chunks"),
                },
                () = tick => {
                    if let Some(checkpointer) = checkpointer.as_mut() {
                        checkpointer.take(&mut runner, &mut fanout).await;
                    }
                    continue;
                }
                () = clock.sleep_until(deadline.unwrap_or(i64::MAX)), if deadline.is_some() => {
                    let ctx = EvalCtx { now_ms: clock.now_ms(), meta: &Value::Null };
                    let mut out = Vec::new();
                    let outcome = evaluate(&sleeps, || runner.advance(clock.now_ms(), &ctx, &mut out));
                    fanout.send(out, outcome, &metrics, send_error, 0).await;
                    continue;
                }
            }
        };
        let Some(input) = input else { break };
        let input = match input {
            Input::Attach(index, rows) => {
                attached.readings.push((index, rows));
                continue;
            }
            Input::End(index) | Input::Failed { index, .. } if attached.has(index) => {
                if let Some(rows) = attached.take(index) {
                    draining = Some((index, rows, input));
                }
                continue;
            }
            input => input,
        };
        let input = match input {
            Input::Failed {
                index,
                message,
                reply,
            } => {
                metrics.source_failures.record(message.clone());
                let done = u32::try_from(metrics.restarts.get()).unwrap_or(u32::MAX);
                if done < restart.attempts {
                    let delay = restart.delay(done, rand::random::<f64>());
                    metrics.restarts.add(1);
                    let resume = match checkpointer.as_mut() {
                        Some(checkpointer) => {
                            checkpointer.take(&mut runner, &mut fanout).await;
                            checkpointer.position(index)
                        }
                        None => None,
                    };
                    tracing::warn!(
                        rule = %fanout.rule,
                        restart = done + 1,
                        attempts = restart.attempts,
                        delay_ms = delay.as_millis() as u64,
                        from = ?resume,
                        "a source failed ({message}); restarting it"
                    );
                    let _ = reply.send(Some(Restart { delay, resume }));
                } else {
                    tracing::error!(
                        rule = %fanout.rule,
                        restarts = done,
                        "a source failed ({message}) and the rule's restarts are used up: the rule stops"
                    );
                    *metrics
                        .stopped_by_error
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = Some(message);
                    let _ = halt_tx.send(true);
                    let _ = reply.send(None);
                }
                continue;
            }
            input => input,
        };
        if let Some((merge, _)) = replay.as_mut() {
            let started = Instant::now();
            let rows_in = match input {
                Input::Rows(index, chunk) => {
                    let n = if merge.is_table(index) {
                        0
                    } else {
                        chunk.rows.len()
                    };
                    merge.add(index, chunk);
                    n
                }
                Input::End(index) => {
                    merge.end(index);
                    0
                }
                Input::Failed { .. } | Input::Attach(..) => unreachable!("handled above"),
            };
            metrics.records_in.add(rows_in as u64);
            let mut out = Vec::new();
            let outcome = evaluate(&sleeps, || {
                replay_steps(&mut runner, merge, &clock, &metrics, send_error, &mut out)
            });
            metrics
                .process_time_us
                .add(started.elapsed().as_micros() as u64);
            fanout
                .send(out, outcome, &metrics, send_error, rows_in)
                .await;
            continue;
        }
        let started = Instant::now();
        let ctx = EvalCtx {
            now_ms: clock.now_ms(),
            meta: &Value::Null,
        };
        let mut out = Vec::new();
        let (outcome, rows_in) = match input {
            Input::Rows(index, chunk) => {
                if let Some(checkpointer) = checkpointer.as_mut() {
                    checkpointer.taken(index);
                }
                let n = chunk.rows.len();
                let outcome = evaluate(&sleeps, || {
                    push_chunk(&mut runner, index, chunk, &ctx, &mut out, send_error)
                });
                (outcome, n)
            }
            // A stop is not the end of a stream's input: its end then releases nothing (with
            // `fireAtEnd`, an ended stream would stop holding the watermark back).
            Input::End(_) if *stop.borrow() || *halt_tx.borrow() => (sql::Outcome::default(), 0),
            Input::End(index) => (
                evaluate(&sleeps, || runner.end_source(index, &ctx, &mut out)),
                0,
            ),
            Input::Failed { .. } | Input::Attach(..) => unreachable!("handled above"),
        };
        metrics.records_in.add(rows_in as u64);
        // Late rows are counted as they come, for the live status.
        let late = runner.late();
        metrics.late.add(late.saturating_sub(late_counted));
        late_counted = late_counted.max(late);
        metrics
            .process_time_us
            .add(started.elapsed().as_micros() as u64);
        fanout
            .send(out, outcome, &metrics, send_error, rows_in)
            .await;
    }
    // A stop of the run (a signal, or the rule stopped by a failed source) is not the end of
    // the input: nothing is fired then, and a checkpoint keeps the open windows.
    let stopped = *stop.borrow() || *halt_tx.borrow();
    let _ = inputs_done.send(());
    while feeders.join_next().await.is_some() {}
    // The streams are done: the tables stop reading.
    let _ = halt_tx.send(true);
    drop(table_input);
    while table_feeders.join_next().await.is_some() {}
    if let Some((merge, after)) = replay.as_mut() {
        // At the end of the input (not at a stop) the clock runs on past the last row, firing
        // what falls due meanwhile.
        if !stopped {
            let mut out = Vec::new();
            let mut outcome = sql::Outcome::default();
            let until = clock.now_ms().saturating_add(*after);
            fire_due(&mut runner, &clock, until, &mut out, &mut outcome);
            clock.advance_to(until);
            fanout.send(out, outcome, &metrics, send_error, 0).await;
        }
        if merge.behind > 0 {
            tracing::warn!(
                rule = %fanout.rule,
                rows = merge.behind,
                "replay: rows recorded earlier than a row before them came at the clock's time"
            );
        }
    }
    let ctx = EvalCtx {
        now_ms: clock.now_ms(),
        meta: &Value::Null,
    };
    let fire = fire_at_end && !stopped;
    if fire {
        let mut out = Vec::new();
        let outcome = evaluate(&sleeps, || runner.finish(&ctx, &mut out));
        fanout.send(out, outcome, &metrics, send_error, 0).await;
    }
    if let Some(checkpointer) = checkpointer.as_mut() {
        // After `fireAtEnd`'s windows, or holding the windows still open (and the rows the
        // watermark holds), so that the next run over a grown input or after a stop goes on
        // with them; the positions are where the input ended.
        checkpointer.take(&mut runner, &mut fanout).await;
        // The last checkpoint: a stopped MQTT source now acknowledges what it covers and
        // disconnects (bounded by its own limit; the margin covers a task that overran it).
        let sources: Vec<Arc<Positions>> = checkpointer
            .sources
            .iter()
            .flatten()
            .map(|(positions, _)| Arc::clone(positions))
            .collect();
        let closed = async {
            for positions in &sources {
                positions.no_more_checkpoints();
            }
            for positions in &sources {
                positions.closed().await;
            }
        };
        let limit = source::ACKS_AT_STOP + Duration::from_secs(1);
        if tokio::time::timeout(limit, closed).await.is_err() {
            tracing::warn!(rule = %fanout.rule, "the sources' acknowledgements at the stop took over {limit:?}: no longer waited for");
        }
    }
    metrics.late.add(runner.late().saturating_sub(late_counted));
    let unsent = if fire {
        runner.unsent()
    } else {
        evaluate(&sleeps, || runner.abandon(&ctx))
    };
    metrics.windows_open_at_end.add(unsent.windows);
    metrics.rows_held_at_end.add(unsent.rows);
    if unsent.windows > 0 || unsent.rows > 0 {
        let when = if stopped {
            "the rule stopped"
        } else {
            "the input ended"
        };
        let why = if fire {
            "count windows that never filled and state windows that nothing closed are not sent"
        } else if stopped {
            "a stop sends nothing more, as in eKuiper"
        } else {
            "the end of the input sends nothing more, as in eKuiper (rule option fireAtEnd sends them)"
        };
        tracing::info!(
            rule = %fanout.rule,
            windows = unsent.windows,
            rows = unsent.rows,
            "{when} with windows open ({}) and rows held ({}): not sent; {why}",
            unsent.windows,
            unsent.rows
        );
    }
}

/// Replaying: hands the statement what the merge of the rule's streams releases, each row
/// after the clock has moved to its recorded time (firing the windows due before it).
fn replay_steps(
    runner: &mut QueryRunner,
    merge: &mut ReplayMerge,
    clock: &Clock,
    metrics: &RuleMetrics,
    send_error: bool,
    out: &mut Vec<Message>,
) -> sql::Outcome {
    let mut outcome = sql::Outcome::default();
    while let Some(step) = merge.next() {
        match step {
            Step::TableRow { index, row, retain } => {
                let at = row.timestamp_ms.max(clock.now_ms());
                fire_due(runner, clock, at, out, &mut outcome);
                clock.advance_to(at);
                runner.table_rows(index, vec![row], retain);
            }
            Step::Row { index, mut row } => {
                let now = clock.now_ms();
                if row.timestamp_ms < now {
                    merge.behind += 1;
                    row.timestamp_ms = now;
                }
                let at = row.timestamp_ms;
                fire_due(runner, clock, at, out, &mut outcome);
                clock.advance_to(at);
                let ctx = EvalCtx {
                    now_ms: at,
                    meta: &Value::Null,
                };
                absorb(&mut outcome, runner.push(index, vec![row], &ctx, out));
            }
            Step::Error { message, replay } => {
                if replay {
                    tracing::debug!("{message}");
                    metrics.exceptions.record(message.clone());
                }
                if send_error {
                    out.push(Message::Error {
                        message: Arc::from(message),
                        timestamp_ms: 0,
                    });
                }
            }
            Step::End(index) => {
                let ctx = EvalCtx {
                    now_ms: clock.now_ms(),
                    meta: &Value::Null,
                };
                absorb(&mut outcome, runner.end_source(index, &ctx, out));
            }
        }
    }
    outcome
}

/// Adds what one evaluation gave to `into`.
fn absorb(into: &mut sql::Outcome, outcome: sql::Outcome) {
    into.errors.extend(outcome.errors);
    into.filtered += outcome.filtered;
}

/// Replaying: moves the clock through every window deadline up to `until` (included), firing
/// what falls due at each.
fn fire_due(
    runner: &mut QueryRunner,
    clock: &Clock,
    until: i64,
    out: &mut Vec<Message>,
    outcome: &mut sql::Outcome,
) {
    while let Some(due) = runner.next_deadline().filter(|due| *due <= until) {
        clock.advance_to(due);
        let ctx = EvalCtx {
            now_ms: clock.now_ms(),
            meta: &Value::Null,
        };
        absorb(outcome, runner.advance(clock.now_ms(), &ctx, out));
        if runner.next_deadline().is_some_and(|next| next <= due) {
            break;
        }
    }
}

/// Whether `rule` can be replayed in its recorded time: it runs in processing time, keeps no
/// checkpoints, and each of its streams can hold the time field.
fn check_replay(rule: &PreparedRule, replay: &Replay) -> Result<(), RunError> {
    let fail = |message: String| RunError::Replay {
        rule: rule.def.id.clone(),
        message,
    };
    if rule.def.options.is_event_time {
        return Err(fail(
            "the rule runs in event time (isEventTime), whose windows follow each row's \
             TIMESTAMP already; a replay drives processing time"
                .into(),
        ));
    }
    if rule.def.options.qos > 0 {
        return Err(fail(format!(
            "the rule has qos {}, but a replay keeps no checkpoints: run it with qos 0",
            rule.def.options.qos
        )));
    }
    let field = &*replay.field;
    for (src, stream) in rule.query.sources.iter().zip(&rule.streams) {
        if !src.table
            && let Some(columns) = &stream.columns
            && !columns.iter().any(|c| c.name.eq_ignore_ascii_case(field))
        {
            return Err(fail(format!(
                "stream `{}` ({}) does not declare a column `{field}` to read the recorded \
                 time from: declare it (e.g. `{field} BIGINT`) or leave the column list empty",
                stream.name, stream.origin
            )));
        }
    }
    Ok(())
}

/// Runs `f`, an evaluation of a rule's statement. A statement that calls `delay` sleeps in it
/// (as eKuiper's does, holding the rule's later rows back), so it runs as blocking work: the
/// sleep holds up no other rule or sink.
/// Its sleeps answer to the rule's interrupt, which the rule's stop trips.
fn evaluate<T>(sleeps: &Option<sql::Interrupt>, f: impl FnOnce() -> T) -> T {
    match sleeps {
        Some(interrupt) => {
            tracing::debug!(
                "evaluating a statement that calls delay (a stop cuts its sleep short)"
            );
            crate::blocking::blocking(|| interrupt.run(f))
        }
        None => f(),
    }
}

/// A task that ends with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a rule with qos 1 or 2 starts from: its sources' positions (by source index; `None`
/// for tables) and the rows its window held, from its last checkpoint if it has one.
struct RestorePlan {
    store: Arc<CheckpointStore>,
    /// Where the rule's sources ask for a checkpoint before the interval is over.
    wanted: Arc<tokio::sync::Notify>,
    sources: Vec<Option<(Arc<Positions>, SourceCheckpoint)>>,
    held: Vec<HeldRow>,
    /// What its analytic and state functions remembered.
    functions: Option<FunctionsCheckpoint>,
    /// Its actions' numbering and unfinished batches, in the rule's order.
    actions: Vec<ActionCheckpoint>,
    /// The rule has no checkpoint yet.
    first: bool,
}

/// Checks `last` against the rule as it is now (same streams, same files) and plans where its
/// sources start; the message says what does not match.
fn restore_plan(
    rule: &PreparedRule,
    store: Arc<CheckpointStore>,
    last: Option<Checkpoint>,
) -> Result<RestorePlan, String> {
    let streams: Vec<(usize, &Arc<StreamDef>)> = rule
        .query
        .sources
        .iter()
        .enumerate()
        .filter(|(_, src)| !src.table)
        .map(|(i, _)| (i, &rule.streams[i]))
        .collect();
    let first = last.is_none();
    let mut actions = Vec::new();
    let mut functions = None;
    let (held, mut saved) = match last {
        Some(last) => {
            let names: Vec<&str> = streams.iter().map(|(_, s)| s.name.as_ref()).collect();
            let saved: Vec<&str> = last.sources.iter().map(|s| s.stream.as_str()).collect();
            if names != saved {
                return Err(format!(
                    "it was taken reading {}, the rule now reads {}; run with \
                     --reset-checkpoints to start over",
                    saved.join(", "),
                    names.join(", ")
                ));
            }
            // Only numbering pinned to the rows (or a batch to refill) ties the checkpoint to
            // the actions.
            if last
                .actions
                .iter()
                .any(|a| a.exactly_once || !a.pending.is_empty())
            {
                let now: Vec<&str> = rule.actions.iter().map(|a| a.name.as_ref()).collect();
                let then: Vec<&str> = last.actions.iter().map(|a| a.action.as_str()).collect();
                let same = now.len() == then.len()
                    && now.iter().zip(&then).all(|(a, b)| b.is_empty() || a == b);
                if !same {
                    return Err(format!(
                        "it was taken with the actions {}, the rule now has {}; run with \
                         --reset-checkpoints to start over",
                        then.join(", "),
                        now.join(", ")
                    ));
                }
            }
            functions = match last.functions {
                Some(functions) => {
                    QueryRunner::check_function_state(&rule.query, &functions.state()).map_err(
                        |e| {
                            format!(
                                "{} (rule `{}`): {e}; run with --reset-checkpoints to start over",
                                store.path().display(),
                                rule.def.id
                            )
                        },
                    )?;
                    Some(functions)
                }
                None => {
                    if let Some(function) = &rule.query.stateful {
                        return Err(format!(
                            "{} holds a checkpoint of rule `{}` written by an earlier version, \
                             which kept no state for `{function}`; run with --reset-checkpoints \
                             to start over",
                            store.path().display(),
                            rule.def.id
                        ));
                    }
                    None
                }
            };
            actions = last.actions;
            (last.held, last.sources.into_iter().map(Some).collect())
        }
        None => (Vec::new(), vec![None; streams.len()]),
    };
    let mut sources = vec![None; rule.query.sources.len()];
    let wanted = Arc::new(tokio::sync::Notify::new());
    for ((index, stream), saved) in streams.into_iter().zip(saved.iter_mut()) {
        let is_file = stream.options.source_type == SourceType::File;
        let path = stream.datasource_path();
        let at = match saved.take() {
            Some(at) => {
                if let Some(file) = &at.file {
                    file.check(&path, at.position.offset)?;
                }
                at
            }
            None => SourceCheckpoint {
                stream: stream.name.to_string(),
                position: Default::default(),
                file: None,
                covered: Vec::new(),
            },
        };
        let at = if is_file && at.file.is_none() {
            let file = FileIdentity::of(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            SourceCheckpoint {
                file: Some(file),
                ..at
            }
        } else {
            at
        };
        if at.position != Default::default() {
            tracing::info!(rule = %rule.def.id, stream = %stream.name, offset = at.position.offset, records = at.position.records, "resuming from the checkpoint");
        }
        let positions = Positions::new(Arc::clone(&wanted));
        // What the broker may send again although this checkpoint counts it already.
        *positions.ledger() = AckLedger::restored(at.position.records, &at.covered);
        sources[index] = Some((Arc::new(positions), at));
    }
    Ok(RestorePlan {
        store,
        wanted,
        sources,
        held,
        functions,
        actions,
        first,
    })
}

/// Tells its sources, when dropped, that their rule takes no more checkpoints.
struct LastCheckpoint(Vec<Arc<Positions>>);

impl Drop for LastCheckpoint {
    fn drop(&mut self) {
        for positions in &self.0 {
            positions.no_more_checkpoints();
        }
    }
}

/// Takes a rule's checkpoints (see [`crate::checkpoint`]).
struct Checkpointer {
    store: Arc<CheckpointStore>,
    rule: String,
    interval: Duration,
    sources: Vec<Option<(Arc<Positions>, SourceCheckpoint)>>,
    /// Where its sources ask for a checkpoint before the interval is over (an MQTT source
    /// whose unacknowledged messages near the broker's inflight window).
    wanted: Arc<tokio::sync::Notify>,
    /// The actions' acknowledgements of barriers, with their numbering.
    acks: mpsc::UnboundedReceiver<sink::BarrierAck>,
    /// The rule had no checkpoint: one is taken before the first row, so that a restart
    /// numbers the actions' batches from where this run started.
    first: bool,
}

impl Checkpointer {
    /// Where source `index` has been read to, by the rows the query took.
    fn position(&self, index: usize) -> Option<Position> {
        self.sources
            .get(index)
            .and_then(Option::as_ref)
            .map(|(_, at)| at.position)
    }

    /// The query took source `index`'s next chunk.
    fn taken(&mut self, index: usize) {
        if let Some(Some((positions, at))) = self.sources.get_mut(index)
            && let Some(position) = positions.taken()
        {
            at.position = position;
        }
    }

    /// Takes a checkpoint now, between two chunks: once the actions have settled what they
    /// were handed, writes the positions and the window's rows in one transaction.
    async fn take(&mut self, runner: &mut QueryRunner, fanout: &mut Fanout) {
        let started = Instant::now();
        let expected = fanout.barrier().await;
        let mut actions: Vec<Option<ActionCheckpoint>> = vec![None; fanout.actions.len()];
        for _ in 0..expected {
            match self.acks.recv().await {
                Some((index, state)) => {
                    if let Some(slot) = actions.get_mut(index) {
                        *slot = Some(state);
                    }
                }
                None => break,
            }
        }
        // A stop that ran out of time left batches undelivered (and uncached): a checkpoint
        // now would cover them. The last one stays, and the next run replays from it.
        let cut_short: u64 = fanout.actions.iter().map(|(_, m)| m.cut_short.get()).sum();
        if cut_short > 0 {
            tracing::error!(
                rule = %self.rule,
                messages = cut_short,
                "checkpoint not written: the stop cut batches short before they were delivered; \
                 the next run replays them from the last checkpoint"
            );
            return;
        }
        let held: Vec<HeldRow> = runner
            .held_rows()
            .unwrap_or_default()
            .iter()
            .map(|(source, row)| HeldRow::new(*source, row))
            .collect();
        let checkpoint = Checkpoint {
            sources: self
                .sources
                .iter()
                .flatten()
                .map(|(positions, at)| SourceCheckpoint {
                    covered: positions.ledger().covered(at.position.records),
                    ..at.clone()
                })
                .collect(),
            held,
            // An action that stopped early has nothing left to number (its name is left empty).
            actions: actions.into_iter().map(Option::unwrap_or_default).collect(),
            functions: Some(FunctionsCheckpoint::new(&runner.function_state())),
        };
        let rows = checkpoint.held.len();
        let store = Arc::clone(&self.store);
        let rule = self.rule.clone();
        let saved = tokio::task::spawn_blocking(move || {
            let result = store.save(&rule, &checkpoint);
            (result, checkpoint)
        })
        .await;
        match saved {
            Ok((Ok(()), checkpoint)) => {
                // Durable: the sources may acknowledge what it covers.
                for (positions, at) in self.sources.iter().flatten() {
                    positions.durable(at.position);
                }
                let positions: Vec<String> = checkpoint
                    .sources
                    .iter()
                    .map(|s| format!("{}@{}:{}", s.stream, s.position.records, s.position.offset))
                    .collect();
                tracing::info!(
                    rule = %self.rule,
                    held_rows = rows,
                    positions = %positions.join(","),
                    took_ms = started.elapsed().as_millis() as u64,
                    "checkpoint written"
                );
            }
            Ok((Err(e), _)) => tracing::error!(rule = %self.rule, "checkpoint not written: {e}"),
            Err(e) => tracing::error!(rule = %self.rule, "checkpoint not written: {e}"),
        }
    }
}

/// Hands a rule's results to its actions.
struct Fanout {
    actions: Vec<(mpsc::Sender<sink::Chunk>, Arc<ActionMetrics>)>,
    open: Vec<bool>,
    rule: String,
}

impl Fanout {
    /// Hands every open action a barrier (an empty chunk); returns how many took it.
    async fn barrier(&mut self) -> usize {
        let mut taken = 0;
        for ((tx, _), open) in self.actions.iter().zip(&self.open) {
            let empty: sink::Chunk = Arc::from(Vec::<Message>::new());
            if *open && tx.send(empty).await.is_ok() {
                taken += 1;
            }
        }
        taken
    }

    async fn send(
        &mut self,
        mut out: Vec<Message>,
        outcome: sql::Outcome,
        metrics: &RuleMetrics,
        send_error: bool,
        _rows_in: usize,
    ) {
        metrics.filtered.add(outcome.filtered);
        // Rows whose `delay` the rule's stop cut short are not sent, and no failure: they are
        // counted with the rows the stop left held.
        let (cut, mut errors): (Vec<_>, Vec<_>) =
            outcome.errors.into_iter().partition(sql::interrupt::is_cut);
        if !cut.is_empty() {
            metrics.rows_held_at_end.add(cut.len() as u64);
            tracing::info!(
                rule = %self.rule,
                rows = cut.len(),
                "the rule stopped during a delay: {} rows not sent, as a stop sends nothing more",
                cut.len()
            );
        }
        errors.sort_by_key(sql::EvalError::place);
        for (inserted, err) in errors.into_iter().enumerate() {
            tracing::debug!(rule = %self.rule, "evaluation failed: {err}");
            metrics.exceptions.record(err.to_string());
            if send_error {
                // In eKuiper's words, where it came among the messages (as its operators
                // send errors down the rule in order).
                let at = (err.place() + inserted).min(out.len());
                out.insert(
                    at,
                    Message::Error {
                        message: Arc::from(err.sent()),
                        timestamp_ms: 0,
                    },
                );
            }
        }
        metrics.records_out.add(
            out.iter()
                .filter(|m| !matches!(m, Message::Error { .. }))
                .count() as u64,
        );
        if out.is_empty() {
            return;
        }
        let chunk: sink::Chunk = Arc::from(out);
        for ((tx, action), open) in self.actions.iter().zip(self.open.iter_mut()) {
            if !*open {
                action.records_in.add(chunk.len() as u64);
                action.failed.add(chunk.len() as u64);
            } else if tx.send(Arc::clone(&chunk)).await.is_err() {
                tracing::error!(
                    rule = %self.rule,
                    "an action stopped early; its remaining messages are counted as failed"
                );
                action.records_in.add(chunk.len() as u64);
                action.failed.add(chunk.len() as u64);
                action.exceptions.record("the action stopped early");
                *open = false;
            }
        }
    }
}
