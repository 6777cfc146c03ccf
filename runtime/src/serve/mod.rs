//! `oort serve`: rules run as a service, managed over eKuiper's REST API.
//!
//! The server keeps a registry of streams, tables and rules (persisted in [`store`]) and runs
//! each rule on its own with the same engine as `oort run-rule`: a rule is a ruleset file of
//! its own (the server's streams and the rule) written to the data directory, run by
//! [`crate::engine::run_observed`] in a task of its own, so one rule failing leaves the others
//! untouched. Relative paths in streams and rules start at the data directory. All rules share
//! one lasting memory bus, so a rule reads what another writes to a `memory` action.

mod api;
pub mod auth;
pub mod ceiling;
mod confkeys;
mod connections;
mod metrics;
pub mod plugins;
mod signals;
pub mod store;
pub mod tls;
mod trim;
mod ui;
mod upload;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value as Json, json};
use tokio::sync::{oneshot, watch};

use crate::engine::{RuleReport, RunConfig};
use crate::reload::Reloader;
use crate::source::MemoryBus;
use crate::stream::StreamKind;
use store::{Kind, Store};

pub use api::ApiError;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The run settings every rule shares (its `rule_path` is set per rule).
    pub run: RunConfig,
    /// How long a stopping rule may go on delivering what it holds.
    pub grace: Duration,
    /// Bearer tokens the API requires (required on a non-loopback address).
    pub tokens: Option<auth::Tokens>,
    /// What any rule may grant any sink at most.
    pub ceiling: ceiling::Ceiling,
    /// HTTPS, and client certificates as a way to authenticate.
    pub tls: Option<tls::TlsFiles>,
    /// The most bytes a plugin install reads: the file or download, and each archive entry.
    pub max_plugin_bytes: u64,
}

/// A stream or table as the server keeps it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct StreamEntry {
    sql: String,
    table: bool,
}

/// Where a rule is in its life.
#[derive(Debug, Clone)]
enum Phase {
    Starting,
    Running,
    Stopped(String),
}

/// What a rule's run shows while it runs.
#[derive(Default)]
struct RuleState {
    phase: Option<Phase>,
    live: Option<(Vec<RuleReport>, Arc<Reloader>)>,
    /// Restarts of the rule that failed to start, by its `restartStrategy` (restarts of a
    /// failed source of a running rule are counted in its live counters).
    restarts: u64,
}

/// A started rule. Its run stops when `stop` is raised or dropped, and stops at once (without
/// the grace period) when `_stop_now` is dropped.
struct RunningRule {
    stop: watch::Sender<bool>,
    _stop_now: watch::Sender<bool>,
    done: tokio::task::JoinHandle<()>,
}

struct RuleEntry {
    rule: Json,
    run: Option<RunningRule>,
    state: Arc<Mutex<RuleState>>,
}

impl RuleEntry {
    fn new(rule: Json) -> Self {
        Self {
            rule,
            run: None,
            state: Arc::new(Mutex::new(RuleState {
                phase: Some(Phase::Stopped("canceled manually.".into())),
                live: None,
                restarts: 0,
            })),
        }
    }

    fn is_running(&self) -> bool {
        self.run.as_ref().is_some_and(|r| !r.done.is_finished())
    }

    /// `Running`, or `Stopped: <reason>` as eKuiper lists rules.
    fn status_line(&self) -> String {
        let mut line = String::new();
        match self.state.lock() {
            Ok(state) => write_status_line(state.phase.as_ref(), &mut line),
            Err(_) => write_status_line(None, &mut line),
        }
        line
    }
}

/// Appends a rule's status line (see [`RuleEntry::status_line`]) to `out`.
fn write_status_line(phase: Option<&Phase>, out: &mut String) {
    match phase {
        Some(Phase::Running) => out.push_str("Running"),
        Some(Phase::Starting) => out.push_str("Starting"),
        Some(Phase::Stopped(why)) => {
            out.push_str("Stopped: ");
            out.push_str(why);
        }
        None => out.push_str("Stopped"),
    }
}

#[derive(Default)]
struct Registry {
    streams: BTreeMap<String, StreamEntry>,
    rules: BTreeMap<String, RuleEntry>,
}

/// The server: its settings, store and registry.
pub struct Server {
    config: ServeConfig,
    store: Store,
    registry: tokio::sync::Mutex<Registry>,
    started: Instant,
    /// The MQTT source configuration rules read (see [`confkeys`]).
    mqtt_conf: Mutex<Option<PathBuf>>,
    /// The memory topics every rule of the server shares.
    bus: Arc<MemoryBus>,
    /// The readings of `SHARED` streams, shared by every rule of the server that reads them.
    shared: Arc<crate::source::SharedSources>,
    /// Turns true when the server stops: the event streams end then (an open one would keep
    /// the HTTP server's graceful shutdown waiting for ever).
    stopping: watch::Sender<bool>,
}

impl Server {
    /// Opens the data directory's store and loads what it holds (rules are not started yet).
    pub fn open(config: ServeConfig) -> Result<Arc<Self>, ApiError> {
        std::fs::create_dir_all(&config.run.data_dir).map_err(|e| {
            ApiError::internal(format!(
                "{}: cannot create the data directory: {e}",
                config.run.data_dir.display()
            ))
        })?;
        let store = Store::open(&config.run.data_dir.join("oort.redb"))?;
        let mut registry = Registry::default();
        for (name, value) in store.all(Kind::Streams)? {
            if let Ok(entry) = serde_json::from_str(&value) {
                registry.streams.insert(name, entry);
            }
        }
        for (id, value) in store.all(Kind::Rules)? {
            if let Ok(Json::Object(mut saved)) = serde_json::from_str::<Json>(&value) {
                let rule = saved.remove("rule").unwrap_or(Json::Null);
                registry.rules.insert(id, RuleEntry::new(rule));
            }
        }
        let mqtt_conf = Mutex::new(config.run.mqtt_conf.clone());
        let server = Arc::new(Self {
            config,
            store,
            registry: tokio::sync::Mutex::new(registry),
            started: Instant::now(),
            mqtt_conf,
            bus: MemoryBus::lasting(),
            shared: crate::source::SharedSources::lasting(),
            stopping: watch::Sender::new(false),
        });
        server.refresh_mqtt_conf()?;
        Ok(server)
    }

    /// Resolves once the server is stopping.
    fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stopping = self.stopping.subscribe();
        async move {
            // An error means the server is gone: stopped too.
            let _ = stopping.wait_for(|s| *s).await;
        }
    }

    /// Writes the MQTT source configuration anew after a change of its keys; rules started
    /// from now on read it.
    fn refresh_mqtt_conf(&self) -> Result<(), ApiError> {
        let path = confkeys::write_merged(self)?;
        if let Ok(mut current) = self.mqtt_conf.lock() {
            *current = path;
        }
        Ok(())
    }

    /// Starts every rule the store says was running.
    pub async fn resume(self: &Arc<Self>) {
        let saved = self.store.all(Kind::Rules).unwrap_or_default();
        let mut registry = self.registry.lock().await;
        for (id, value) in saved {
            let running = serde_json::from_str::<Json>(&value)
                .ok()
                .and_then(|v| v.get("running").and_then(Json::as_bool))
                .unwrap_or(false);
            if running {
                tracing::info!(rule = %id, "starting the rule again: it was running");
                if let Err(e) = self.start_locked(&mut registry, &id) {
                    tracing::error!(rule = %id, "cannot start: {}", e.message);
                }
            }
        }
    }

    fn persist_rule(&self, id: &str, rule: &Json, running: bool) -> Result<(), ApiError> {
        let saved = json!({ "rule": rule, "running": running }).to_string();
        self.store
            .put(Kind::Rules, id, &saved)
            .map_err(ApiError::from)
    }

    /// The ruleset file a rule runs from: the server's streams and tables, and the rule.
    fn write_run_file(
        &self,
        registry: &Registry,
        id: &str,
        rule: &Json,
    ) -> Result<PathBuf, ApiError> {
        let mut streams = Map::new();
        let mut tables = Map::new();
        for (name, entry) in &registry.streams {
            let target = if entry.table {
                &mut tables
            } else {
                &mut streams
            };
            target.insert(name.clone(), Json::String(entry.sql.clone()));
        }
        let mut rules = Map::new();
        rules.insert(id.to_string(), confkeys::resolve_sink_keys(self, id, rule)?);
        let doc = json!({ "streams": streams, "tables": tables, "rules": rules });
        let path = self
            .config
            .run
            .data_dir
            .join(format!(".rule-{}.json", file_safe(id)));
        std::fs::write(&path, doc.to_string())
            .map_err(|e| ApiError::internal(format!("{}: cannot write: {e}", path.display())))?;
        Ok(path)
    }

    fn run_config(&self, path: PathBuf) -> RunConfig {
        let mut config = self.config.run.clone();
        config.rule_paths = vec![path];
        config.mqtt_conf = self.mqtt_conf.lock().ok().and_then(|c| c.clone());
        config.stream_paths = Vec::new();
        config.only_rule = None;
        config.watch = false;
        config
    }

    /// Checks a rule (JSON, SQL, streams, sinks and their props) without running it.
    async fn check_rule(&self, registry: &Registry, id: &str, rule: &Json) -> Result<(), ApiError> {
        let path = self.write_run_file(registry, id, rule)?;
        let config = self.run_config(path.clone());
        let report = crate::engine::validate(&config)
            .await
            .map_err(|e| ApiError::bad_request(without_path(&e.to_string(), &path)))?;
        let ceiling = &self.config.ceiling;
        let exceeds = |message: String| ApiError::forbidden(format!("rule `{id}`: {message}"));
        ceiling
            .check_builtin(&confkeys::resolve_sink_keys(self, id, rule)?)
            .map_err(exceeds)?;
        for (_, action, grants) in &report.grants {
            ceiling.check_grants(action, grants).map_err(exceeds)?;
        }
        Ok(())
    }

    /// Starts a rule's run (the registry is locked by the caller).
    fn start_locked(self: &Arc<Self>, registry: &mut Registry, id: &str) -> Result<(), ApiError> {
        let rule = match registry.rules.get(id) {
            Some(entry) if entry.is_running() => return Ok(()),
            Some(entry) => entry.rule.clone(),
            None => return Err(ApiError::rule_not_found(id)),
        };
        let path = self.write_run_file(registry, id, &rule)?;
        let config = self.run_config(path.clone());
        let entry = registry.rules.get_mut(id).expect("checked above");
        let state = Arc::clone(&entry.state);
        if let Ok(mut s) = state.lock() {
            s.phase = Some(Phase::Starting);
            s.live = None;
            s.restarts = 0;
        }
        // Flags, not one-shot signals: a rule that fails to start is tried again by its
        // `restartStrategy`, and each try listens to them.
        let (stop, stopping) = watch::channel(false);
        let (stop_now, stopping_now) = watch::channel(false);
        let grace = self.config.grace;
        let rule_id = id.to_string();
        let bus = Arc::clone(&self.bus);
        let shared = Arc::clone(&self.shared);
        // On the rules' runtime, also when started from an API call (see `serve`).
        let done = rules_runtime().spawn(async move {
            let strategy = crate::engine::load(&config)
                .ok()
                .and_then(|(rules, _)| rules.first().map(|r| r.options.restart.clone()))
                .unwrap_or_default();
            let mut tries = 0u32;
            let why = loop {
                let observed = Arc::clone(&state);
                let around = crate::engine::Surroundings {
                    bus: Arc::clone(&bus),
                    shared: Arc::clone(&shared),
                    // One listener for the server (see `signals`).
                    signals: crate::engine::Signals::Caller,
                    // Most rules of a server may wait long for their first row: an idle rule
                    // keeps no sink instance (its errors at start are still reported then).
                    park_idle_sinks: true,
                };
                let outcome = crate::engine::run_within(
                    &config,
                    around,
                    raised(stopping.clone()),
                    raised(stopping_now.clone()),
                    Some(grace),
                    move |report, reloader| {
                        if let Ok(mut s) = observed.lock() {
                            s.phase = Some(Phase::Running);
                            s.live = Some((report.rules.clone(), Arc::clone(reloader)));
                        }
                    },
                )
                .await;
                let why = match outcome {
                    Ok(report) => match report.stopped_by_error().into_iter().next() {
                        Some((_, why)) => {
                            tracing::error!(rule = %rule_id, "the rule stopped by error: {why}");
                            why
                        }
                        None if report.interrupted => "canceled manually.".to_string(),
                        None => "the input ended.".to_string(),
                    },
                    Err(e) => {
                        let why = without_path(&e.to_string(), &path);
                        if tries < strategy.attempts && !*stopping.borrow() {
                            let delay = strategy.delay(tries, rand::random::<f64>());
                            tries += 1;
                            tracing::warn!(rule = %rule_id, restart = tries, attempts = strategy.attempts, delay_ms = delay.as_millis() as u64, "the rule failed to start ({why}); starting it again");
                            if let Ok(mut s) = state.lock() {
                                s.phase =
                                    Some(Phase::Stopped(format!("retrying after error: {why}")));
                                s.restarts = u64::from(tries);
                            }
                            tokio::select! {
                                () = tokio::time::sleep(delay) => continue,
                                () = raised(stopping.clone()) => break "canceled manually.".to_string(),
                            }
                        }
                        tracing::error!(rule = %rule_id, "the rule stopped: {why}");
                        why
                    }
                };
                break why;
            };
            if let Ok(mut s) = state.lock() {
                s.phase = Some(Phase::Stopped(why));
            }
        });
        entry.run = Some(RunningRule {
            stop,
            _stop_now: stop_now,
            done,
        });
        Ok(())
    }

    /// Stops a rule's run and waits until its actions have drained and closed.
    async fn stop_run(run: Option<RunningRule>) {
        if let Some(run) = run {
            let _ = run.stop.send(true);
            let _ = run.done.await;
        }
    }

    /// The running rules, in id order: each one's live counters and the reloader of its sink
    /// modules.
    async fn live_rules(&self) -> Vec<(String, Vec<RuleReport>, Arc<Reloader>)> {
        let registry = self.registry.lock().await;
        registry
            .rules
            .iter()
            .filter(|(_, e)| e.is_running())
            .filter_map(|(id, e)| {
                let state = e.state.lock().ok()?;
                let (rules, reloader) = state.live.as_ref()?;
                Some((id.clone(), rules.clone(), Arc::clone(reloader)))
            })
            .collect()
    }

    /// The rule ids and their status lines, in id order.
    async fn rule_list(&self) -> Vec<Json> {
        let registry = self.registry.lock().await;
        registry
            .rules
            .iter()
            .map(|(id, entry)| {
                json!({
                    "id": id,
                    "name": entry.rule.get("name").and_then(Json::as_str).unwrap_or(id),
                    "status": entry.status_line(),
                    "tags": entry.rule.get("tags").cloned().unwrap_or(Json::Null),
                })
            })
            .collect()
    }
}

/// Resolves the `resourceId` and `connectionSelector` of the rules' `mqtt` actions from the
/// server's store in `data_dir` (`oort.redb`), as the server does (see
/// [`confkeys::resolve_mqtt_action`]): how `oort run-rule --data-dir DIR` uses the keys and
/// connections given to a server over its API. The store is opened read-only, and only when an
/// action refers to something; a running server holds it locked.
pub(crate) fn resolve_stored_refs(
    data_dir: &std::path::Path,
    rules: &mut [crate::rule::RuleDef],
) -> Result<(), crate::rule::RuleError> {
    let refers = |props: &Map<String, Json>| {
        props.contains_key("resourceId") || props.contains_key(connections::SELECTOR)
    };
    let mut loaded = None;
    let store = data_dir.join("oort.redb");
    for rule in rules.iter_mut() {
        for action in rule.actions.iter_mut() {
            if action.plugin != "mqtt" || !refers(&action.props) {
                continue;
            }
            let field = format!("actions[{}].mqtt", action.index);
            let fail = |message: String| crate::rule::RuleError::Field {
                path: rule.path.clone(),
                rule: rule.id.clone(),
                field: field.clone(),
                message,
            };
            if loaded.is_none() {
                let read = |kind| {
                    store::read_table(&store, kind)
                        .map(Option::unwrap_or_default)
                        .map_err(|e| fail(format!("cannot read the server's store: {e}")))
                };
                loaded = Some((
                    confkeys::parse_sink_keys(read(Kind::SinkConfKeys)?),
                    connections::parse_entries(read(Kind::Connections)?),
                ));
            }
            let (keys, known) = loaded.as_ref().expect("loaded above");
            // The message names the field itself (`actions[0].mqtt.resourceId: ...`).
            confkeys::resolve_mqtt_action(keys, known, &mut action.props, "").map_err(|e| {
                let (sub, message) = e
                    .trim_start_matches('.')
                    .split_once(": ")
                    .unwrap_or(("", &e));
                crate::rule::RuleError::Field {
                    path: rule.path.clone(),
                    rule: rule.id.clone(),
                    field: format!("{field}.{sub}"),
                    message: format!("{message} in {}", store.display()),
                }
            })?;
        }
    }
    Ok(())
}

/// Completes once `flag` is raised (or its sender is gone).
async fn raised(mut flag: watch::Receiver<bool>) {
    let _ = flag.wait_for(|up| *up).await;
}

/// A message about a rule without the path of the file it runs from: the API's user sent a
/// rule, not a file.
fn without_path(message: &str, path: &std::path::Path) -> String {
    message.replace(&format!("{}: ", path.display()), "")
}

/// A rule id as part of a file name: characters other than letters, digits, `-` and `_`
/// become `_`, and a hash of the id keeps two ids apart.
fn file_safe(id: &str) -> String {
    let cleaned: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let hash = blake3::hash(id.as_bytes()).to_hex();
    format!("{cleaned}-{}", &hash[..8])
}

fn stream_kind_name(kind: StreamKind) -> &'static str {
    match kind {
        StreamKind::Stream => "stream",
        StreamKind::Table => "table",
    }
}

/// Serves `app` on `listener` until `stopping` completes (on the HTTP runtime).
async fn serve_http(
    listener: std::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: axum::Router,
    stopping: oneshot::Receiver<()>,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
    // Ends with this runtime, when the server stops.
    tokio::spawn(trim::periodically());
    let stopping = async {
        let _ = stopping.await;
    };
    match tls {
        Some(tls) => {
            let listener = tls::TlsListener::new(listener, tls).map_err(|e| e.to_string())?;
            axum::serve(listener, app)
                .with_graceful_shutdown(stopping)
                .await
        }
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(stopping)
                .await
        }
    }
    .map_err(|e| e.to_string())
}

/// The runtime the rules run on: the one `serve` was called on (the HTTP API answers from a
/// runtime of its own).
static RULES_RUNTIME: std::sync::OnceLock<tokio::runtime::Handle> = std::sync::OnceLock::new();

fn rules_runtime() -> tokio::runtime::Handle {
    RULES_RUNTIME
        .get()
        .cloned()
        .unwrap_or_else(tokio::runtime::Handle::current)
}

/// Runs the server until Ctrl-C or SIGTERM, then stops every rule (each drains its actions
/// within the grace period) and returns.
pub async fn serve(
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let client_certificates = config.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
    auth::check_listen(config.listen, config.tokens.as_ref(), client_certificates)?;
    let tls = match &config.tls {
        Some(files) => Some(files.server_config()?),
        None => None,
    };
    let _ = RULES_RUNTIME.set(tokio::runtime::Handle::current());
    let server = Server::open(config.clone()).map_err(|e| e.message)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    // Before any rule starts: the rules listen to no signal of their own.
    signals::listen(&server);
    server.resume().await;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // The address is printed (not only logged) so scripts and tests can wait for it.
    println!("oort serve listening on {scheme}://{local}");
    tracing::info!("listening on {scheme}://{local}");
    let mut app = api::router(Arc::clone(&server))
        .merge(ui::events(Arc::clone(&server)))
        .merge(upload::router(Arc::clone(&server)));
    if let Some(tokens) = config.tokens.clone() {
        app = app.layer(axum::middleware::from_fn_with_state(
            tokens,
            auth::require_token,
        ));
    }
    // Probes answer without a token: they tell nothing but that the server is up and ready.
    let app = app.merge(
        axum::Router::new()
            .route("/healthz", axum::routing::get(metrics::healthz))
            .route("/readyz", axum::routing::get(metrics::readyz))
            .with_state(Arc::clone(&server)),
    );
    // The console's files hold no data: the page asks for the token and sends it on each call.
    let app = app.merge(ui::assets());
    // The HTTP API answers from a thread and runtime of its own: a request (the console's page
    // among them) does not wait in line behind the rules' work on the main runtime.
    let listener = listener.into_std().map_err(|e| e.to_string())?;
    let (stop_http, http_stopping) = oneshot::channel::<()>();
    let (http_ended, mut http_end) = oneshot::channel::<Result<(), String>>();
    std::thread::Builder::new()
        .name("oort-http".into())
        .spawn(move || {
            let served = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the HTTP runtime: {e}"))
                .and_then(|rt| rt.block_on(serve_http(listener, tls, app, http_stopping)));
            let _ = http_ended.send(served);
        })
        .map_err(|e| format!("cannot start the HTTP thread: {e}"))?;
    tokio::select! {
        () = shutdown => {
            server.stopping.send_replace(true);
            let _ = stop_http.send(());
            http_end.await.map_err(|_| "the HTTP thread ended".to_string())??;
        }
        ended = &mut http_end => ended.map_err(|_| "the HTTP thread ended".to_string())??,
    }
    // Stop every rule, keeping what each was doing in the store: they run again at the next
    // start.
    let runs: Vec<_> = {
        let mut registry = server.registry.lock().await;
        registry
            .rules
            .values_mut()
            .filter_map(|e| e.run.take())
            .collect()
    };
    for run in runs {
        Server::stop_run(Some(run)).await;
    }
    Ok(())
}
