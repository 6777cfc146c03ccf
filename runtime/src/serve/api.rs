//! The REST API, with eKuiper's paths, bodies and answers: plain-text confirmations, JSON
//! documents, and errors as `{"error": code, "message": ...}` with a fitting HTTP status.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Map, Value as Json, json};

use super::{Phase, RuleEntry, Server, StreamEntry, stream_kind_name};
use crate::stream::{StreamDef, StreamKind, parse_streams};

/// An error answer: eKuiper's `{"error": code, "message": ...}` with an HTTP status.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// eKuiper's error code (1000 undefined, 1002 not found).
    pub code: u32,
    /// What went wrong.
    pub message: String,
}

impl ApiError {
    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: 1000,
            message: message.into(),
        }
    }

    pub(super) fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: 1002,
            message: message.into(),
        }
    }

    pub(super) fn forbidden(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            code: 1000,
            message: message.into(),
        }
    }

    pub(super) fn conflict(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            code: 1000,
            message: message.into(),
        }
    }

    pub(super) fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: 1000,
            message: message.into(),
        }
    }

    pub(super) fn rule_not_found(id: &str) -> Self {
        Self::not_found(format!("rule {id} not found"))
    }
}

/// The store failed: the server's fault, not the request's.
impl From<super::store::StoreError> for ApiError {
    fn from(e: super::store::StoreError) -> Self {
        Self::internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.code, "message": self.message });
        (self.status, axum::Json(body)).into_response()
    }
}

type Answer = Result<Response, ApiError>;

pub(super) fn text(status: StatusCode, body: String) -> Answer {
    Ok((status, body).into_response())
}

fn json_answer(body: Json) -> Answer {
    Ok(axum::Json(body).into_response())
}

pub(super) fn parse_body(body: &str) -> Result<Json, ApiError> {
    parse(body)
}

/// A request's body that must be a JSON object (a configuration key's or connection's props).
pub(super) fn parse_props(body: &str) -> Result<Map<String, Json>, ApiError> {
    parse(body)
}

fn parse<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, ApiError> {
    serde_json::from_str(body).map_err(|e| ApiError::bad_request(format!("Invalid body: {e}")))
}

/// The API's routes.
pub(super) fn router(server: Arc<Server>) -> Router {
    let router = Router::new()
        .route("/", get(root).post(root))
        .route("/ping", get(ping))
        .route("/metrics", get(super::metrics::metrics))
        .route("/streams", get(list_streams).post(create_stream))
        .route(
            "/streams/{name}",
            get(describe_stream).put(update_stream).delete(drop_stream),
        )
        .route("/tables", get(list_tables).post(create_table))
        .route(
            "/tables/{name}",
            get(describe_table).put(update_table).delete(drop_table),
        )
        .route("/rules", get(list_rules).post(create_rule))
        .route("/rules/validate", post(validate_rule))
        .route(
            "/rules/{id}",
            get(describe_rule).put(update_rule).delete(drop_rule),
        )
        .route("/rules/{id}/start", post(start_rule))
        .route("/rules/{id}/stop", post(stop_rule))
        .route("/rules/{id}/restart", post(restart_rule))
        .route("/rules/{id}/status", get(rule_status))
        .route("/rules/{id}/topo", get(rule_topo))
        .route("/ruleset/import", post(import_ruleset))
        .route("/ruleset/export", post(export_ruleset))
        .route(
            "/plugins/sinks",
            get(super::plugins::list).post(super::plugins::create),
        )
        .route(
            "/plugins/sinks/{name}",
            get(super::plugins::describe)
                .put(super::plugins::update)
                .delete(super::plugins::drop_plugin),
        )
        .route(
            "/connections",
            get(super::connections::list).post(super::connections::create),
        )
        .route(
            "/connections/{id}",
            get(super::connections::describe)
                .put(super::connections::update)
                .delete(super::connections::remove),
        );
    // eKuiper's configuration keys, for sources, sinks and (its older form) connections: the
    // list under `/metadata/<kind>/yaml/{name}`, one key under
    // `/metadata/<kind>/{name}/confKeys/{key}`.
    let conf_keys = [
        (
            "sources",
            get(super::confkeys::list),
            get(super::confkeys::describe)
                .put(super::confkeys::register)
                .delete(super::confkeys::remove),
        ),
        (
            "sinks",
            get(super::confkeys::sink_list),
            get(super::confkeys::sink_describe)
                .put(super::confkeys::sink_register)
                .delete(super::confkeys::sink_remove),
        ),
        (
            "connections",
            get(super::connections::yaml),
            put(super::connections::register).delete(super::connections::unregister),
        ),
    ];
    conf_keys
        .into_iter()
        .fold(router, |router, (kind, list, key)| {
            router
                .route(&format!("/metadata/{kind}/yaml/{{name}}"), list)
                .route(&format!("/metadata/{kind}/{{name}}/confKeys/{{key}}"), key)
        })
        .with_state(server)
}

async fn root(State(server): State<Arc<Server>>) -> Answer {
    json_answer(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "upTimeSeconds": server.started.elapsed().as_secs(),
    }))
}

async fn ping() -> StatusCode {
    StatusCode::OK
}

// ---- streams and tables ----

fn kind_label(kind: StreamKind) -> &'static str {
    match kind {
        StreamKind::Stream => "Stream",
        StreamKind::Table => "Table",
    }
}

/// Parses one `CREATE STREAM`/`CREATE TABLE` statement of the kind the path serves.
pub(super) fn parse_one(
    server: &Server,
    sql: &str,
    kind: StreamKind,
) -> Result<StreamDef, ApiError> {
    let base = server
        .config
        .run
        .data_dir
        .canonicalize()
        .unwrap_or_else(|_| server.config.run.data_dir.clone());
    let mut defs =
        parse_streams(sql, "sql", &base).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if defs.len() != 1 {
        return Err(ApiError::bad_request(format!(
            "expected one CREATE {} statement, found {}",
            kind_label(kind).to_uppercase(),
            defs.len()
        )));
    }
    let def = defs.remove(0);
    if def.kind != kind {
        return Err(ApiError::bad_request(format!(
            "`{}` is a {}: create it under /{}s",
            def.name,
            stream_kind_name(def.kind),
            stream_kind_name(def.kind)
        )));
    }
    Ok(def)
}

fn sql_of(body: &str) -> Result<String, ApiError> {
    parse_body(body)?
        .get("sql")
        .and_then(Json::as_str)
        .map(str::to_string)
        .ok_or_else(|| ApiError::bad_request("Invalid body: field `sql` (a string) is required"))
}

async fn create_def(server: &Server, body: &str, kind: StreamKind) -> Answer {
    let sql = sql_of(body)?;
    let def = parse_one(server, &sql, kind)?;
    let name = def.name.to_string();
    let mut registry = server.registry.lock().await;
    if registry.streams.contains_key(&name) {
        return Err(ApiError::conflict(format!(
            "{} {name} already exists",
            kind_label(kind)
        )));
    }
    let entry = StreamEntry {
        sql,
        table: kind == StreamKind::Table,
    };
    store_def(server, &name, &entry)?;
    registry.streams.insert(name.clone(), entry);
    text(
        StatusCode::CREATED,
        format!("{} {name} is created.", kind_label(kind)),
    )
}

fn store_def(server: &Server, name: &str, entry: &StreamEntry) -> Result<(), ApiError> {
    let value = serde_json::to_string(entry).map_err(|e| ApiError::internal(e.to_string()))?;
    server
        .store
        .put(super::store::Kind::Streams, name, &value)
        .map_err(ApiError::from)
}

async fn list_defs(server: &Server, kind: StreamKind) -> Answer {
    let registry = server.registry.lock().await;
    let names: Vec<&String> = registry
        .streams
        .iter()
        .filter(|(_, e)| e.table == (kind == StreamKind::Table))
        .map(|(name, _)| name)
        .collect();
    json_answer(json!(names))
}

fn find_def<'a>(
    registry: &'a super::Registry,
    name: &str,
    kind: StreamKind,
) -> Result<&'a StreamEntry, ApiError> {
    registry
        .streams
        .get(name)
        .filter(|e| e.table == (kind == StreamKind::Table))
        .ok_or_else(|| {
            ApiError::not_found(format!("{} {name} is not found", stream_kind_name(kind)))
        })
}

async fn describe_def(server: &Server, name: &str, kind: StreamKind) -> Answer {
    let registry = server.registry.lock().await;
    let entry = find_def(&registry, name, kind)?;
    let def = parse_one(server, &entry.sql, kind)?;
    let fields: Vec<Json> = def
        .columns
        .iter()
        .flatten()
        .map(|c| json!({ "Name": c.name, "FieldType": c.ty.name() }))
        .collect();
    let o = &def.options;
    let mut options = Map::new();
    options.insert("DATASOURCE".into(), json!(o.datasource));
    options.insert(
        "TYPE".into(),
        json!(format!("{:?}", o.source_type).to_lowercase()),
    );
    options.insert(
        "FORMAT".into(),
        json!(format!("{:?}", o.format).to_uppercase()),
    );
    for (key, value) in [
        ("CONF_KEY", &o.conf_key),
        ("TIMESTAMP", &o.timestamp),
        ("TIMESTAMP_FORMAT", &o.timestamp_format),
        ("KEY", &o.key),
    ] {
        if let Some(v) = value {
            options.insert(key.into(), json!(v));
        }
    }
    json_answer(json!({
        "Name": def.name.as_ref(),
        "StreamType": stream_kind_name(kind),
        "StreamFields": if def.columns.is_some() { json!(fields) } else { Json::Null },
        "Options": options,
        "Statement": entry.sql,
    }))
}

async fn update_def(server: &Server, name: &str, body: &str, kind: StreamKind) -> Answer {
    let sql = sql_of(body)?;
    let def = parse_one(server, &sql, kind)?;
    if def.name.as_ref() != name {
        return Err(ApiError::bad_request(format!(
            "the statement defines `{}`, not `{name}`",
            def.name
        )));
    }
    let mut registry = server.registry.lock().await;
    find_def(&registry, name, kind)?;
    let entry = StreamEntry {
        sql,
        table: kind == StreamKind::Table,
    };
    store_def(server, name, &entry)?;
    registry.streams.insert(name.to_string(), entry);
    text(
        StatusCode::OK,
        format!("{} {name} is updated.", kind_label(kind)),
    )
}

async fn drop_def(server: &Server, name: &str, kind: StreamKind) -> Answer {
    let mut registry = server.registry.lock().await;
    find_def(&registry, name, kind)?;
    server.store.remove(super::store::Kind::Streams, name)?;
    registry.streams.remove(name);
    text(
        StatusCode::OK,
        format!("{} {name} is dropped.", kind_label(kind)),
    )
}

async fn list_streams(State(s): State<Arc<Server>>) -> Answer {
    list_defs(&s, StreamKind::Stream).await
}
async fn create_stream(State(s): State<Arc<Server>>, body: String) -> Answer {
    create_def(&s, &body, StreamKind::Stream).await
}
async fn describe_stream(State(s): State<Arc<Server>>, Path(name): Path<String>) -> Answer {
    describe_def(&s, &name, StreamKind::Stream).await
}
async fn update_stream(
    State(s): State<Arc<Server>>,
    Path(name): Path<String>,
    body: String,
) -> Answer {
    update_def(&s, &name, &body, StreamKind::Stream).await
}
async fn drop_stream(State(s): State<Arc<Server>>, Path(name): Path<String>) -> Answer {
    drop_def(&s, &name, StreamKind::Stream).await
}
async fn list_tables(State(s): State<Arc<Server>>) -> Answer {
    list_defs(&s, StreamKind::Table).await
}
async fn create_table(State(s): State<Arc<Server>>, body: String) -> Answer {
    create_def(&s, &body, StreamKind::Table).await
}
async fn describe_table(State(s): State<Arc<Server>>, Path(name): Path<String>) -> Answer {
    describe_def(&s, &name, StreamKind::Table).await
}
async fn update_table(
    State(s): State<Arc<Server>>,
    Path(name): Path<String>,
    body: String,
) -> Answer {
    update_def(&s, &name, &body, StreamKind::Table).await
}
async fn drop_table(State(s): State<Arc<Server>>, Path(name): Path<String>) -> Answer {
    drop_def(&s, &name, StreamKind::Table).await
}

// ---- rules ----

fn rule_id(rule: &Json) -> Result<String, ApiError> {
    if !rule.is_object() {
        return Err(ApiError::bad_request(
            "Invalid body: a rule is a JSON object",
        ));
    }
    match rule.get("id") {
        Some(Json::String(id)) if !id.trim().is_empty() => Ok(id.clone()),
        _ => Err(ApiError::bad_request(
            "Invalid body: field `id` (a non-empty string) is required",
        )),
    }
}

/// `triggered: false` creates a rule without starting it.
fn triggered(rule: &Json) -> bool {
    rule.get("triggered")
        .and_then(Json::as_bool)
        .unwrap_or(true)
}

async fn list_rules(State(server): State<Arc<Server>>) -> Answer {
    json_answer(Json::Array(server.rule_list().await))
}

async fn create_rule(State(server): State<Arc<Server>>, body: String) -> Answer {
    let rule = parse_body(&body)?;
    let id = rule_id(&rule)?;
    let mut registry = server.registry.lock().await;
    if registry.rules.contains_key(&id) {
        return Err(ApiError::conflict(format!("rule {id} already exists")));
    }
    server.check_rule(&registry, &id, &rule).await?;
    let run = triggered(&rule);
    server.persist_rule(&id, &rule, run)?;
    registry.rules.insert(id.clone(), RuleEntry::new(rule));
    if run {
        server.start_locked(&mut registry, &id)?;
    }
    text(
        StatusCode::CREATED,
        format!("Rule {id} was created successfully."),
    )
}

async fn describe_rule(State(server): State<Arc<Server>>, Path(id): Path<String>) -> Answer {
    let registry = server.registry.lock().await;
    let entry = registry
        .rules
        .get(&id)
        .ok_or_else(|| ApiError::rule_not_found(&id))?;
    json_answer(entry.rule.clone())
}

async fn update_rule(
    State(server): State<Arc<Server>>,
    Path(id): Path<String>,
    body: String,
) -> Answer {
    let mut rule = parse_body(&body)?;
    match rule.get("id") {
        None => {
            if let Some(o) = rule.as_object_mut() {
                o.insert("id".into(), json!(id));
            }
        }
        Some(given) if given.as_str() == Some(id.as_str()) => {}
        Some(given) => {
            return Err(ApiError::bad_request(format!(
                "Invalid body: the rule's id {given} is not {id}"
            )));
        }
    }
    rule_id(&rule)?;
    let old_run = {
        let mut registry = server.registry.lock().await;
        if !registry.rules.contains_key(&id) {
            return Err(ApiError::rule_not_found(&id));
        }
        server.check_rule(&registry, &id, &rule).await?;
        let entry = registry.rules.get_mut(&id).expect("checked above");
        entry.rule = rule.clone();
        entry.run.take()
    };
    Server::stop_run(old_run).await;
    let mut registry = server.registry.lock().await;
    if !registry.rules.contains_key(&id) {
        return Err(ApiError::rule_not_found(&id));
    }
    let run = triggered(&rule);
    server.persist_rule(&id, &rule, run)?;
    if run {
        server.start_locked(&mut registry, &id)?;
    }
    text(
        StatusCode::OK,
        format!("Rule {id} was updated successfully."),
    )
}

async fn drop_rule(State(server): State<Arc<Server>>, Path(id): Path<String>) -> Answer {
    let run = {
        let mut registry = server.registry.lock().await;
        let entry = registry
            .rules
            .remove(&id)
            .ok_or_else(|| ApiError::rule_not_found(&id))?;
        server.store.remove(super::store::Kind::Rules, &id)?;
        entry.run
    };
    // Dropping a running rule stops it first: its actions drain and close.
    Server::stop_run(run).await;
    text(StatusCode::OK, format!("Rule {id} is dropped."))
}

async fn start_rule(State(server): State<Arc<Server>>, Path(id): Path<String>) -> Answer {
    let mut registry = server.registry.lock().await;
    let rule = registry
        .rules
        .get(&id)
        .map(|e| e.rule.clone())
        .ok_or_else(|| ApiError::rule_not_found(&id))?;
    server.persist_rule(&id, &rule, true)?;
    server.start_locked(&mut registry, &id)?;
    text(StatusCode::OK, format!("Rule {id} was started"))
}

/// Takes a rule's run out of the registry, marking the rule stopped in the store.
async fn take_run(server: &Server, id: &str) -> Result<Option<super::RunningRule>, ApiError> {
    let mut registry = server.registry.lock().await;
    let entry = registry
        .rules
        .get_mut(id)
        .ok_or_else(|| ApiError::rule_not_found(id))?;
    let rule = entry.rule.clone();
    let run = entry.run.take();
    server.persist_rule(id, &rule, false)?;
    Ok(run)
}

async fn stop_rule(State(server): State<Arc<Server>>, Path(id): Path<String>) -> Answer {
    let run = take_run(&server, &id).await?;
    Server::stop_run(run).await;
    text(StatusCode::OK, format!("Rule {id} was stopped."))
}

async fn restart_rule(State(server): State<Arc<Server>>, Path(id): Path<String>) -> Answer {
    let run = take_run(&server, &id).await?;
    Server::stop_run(run).await;
    let mut registry = server.registry.lock().await;
    let rule = registry
        .rules
        .get(&id)
        .map(|e| e.rule.clone())
        .ok_or_else(|| ApiError::rule_not_found(&id))?;
    server.persist_rule(&id, &rule, true)?;
    server.start_locked(&mut registry, &id)?;
    text(StatusCode::OK, format!("Rule {id} was restarted"))
}

/// eKuiper's metric keys of one node (`source_<stream>_0_`, `op_project_0_`,
/// `sink_<action>_0_`), with Oort's own counters after them.
fn put_metrics(out: &mut Map<String, Json>, node: &str, values: Vec<(&str, Json)>) {
    for (name, value) in values {
        out.insert(format!("{node}_0_{name}"), value);
    }
}

async fn rule_status(State(server): State<Arc<Server>>, Path(id): Path<String>) -> Answer {
    let registry = server.registry.lock().await;
    let entry = registry
        .rules
        .get(&id)
        .ok_or_else(|| ApiError::rule_not_found(&id))?;
    json_answer(Json::Object(status_map(entry, &server.shared)?))
}

/// A rule's status document (`GET /rules/{id}/status`, and the console's live updates). A
/// stream the rule reads through a shared reading also has that reading's counters, under
/// eKuiper's keys of a node of a shared stream's sub-topology (`op_<stream>_shared_0_...`).
pub(super) fn status_map(
    entry: &RuleEntry,
    shared: &crate::source::SharedSources,
) -> Result<Map<String, Json>, ApiError> {
    let state = entry
        .state
        .lock()
        .map_err(|_| ApiError::internal("the rule's state is poisoned"))?;
    let mut out = Map::new();
    match &state.phase {
        Some(Phase::Running) => {
            out.insert("status".into(), json!("running"));
        }
        Some(Phase::Starting) => {
            out.insert("status".into(), json!("starting"));
        }
        Some(Phase::Stopped(why)) => {
            out.insert("status".into(), json!("stopped"));
            out.insert("message".into(), json!(why));
        }
        None => {
            out.insert("status".into(), json!("stopped"));
        }
    }
    out.insert("restarts".into(), json!(state.restarts));
    if let Some((rules, _)) = &state.live {
        let readings = shared.stats();
        for r in rules {
            out.insert(
                "restarts".into(),
                json!(state.restarts + r.rule.restarts.get()),
            );
            let s = &r.source;
            for stream in r.stream.split(", ") {
                put_metrics(
                    &mut out,
                    &format!("source_{stream}"),
                    vec![
                        (
                            "records_in_total",
                            json!(s.records_out.get() + s.exceptions.total()),
                        ),
                        ("records_out_total", json!(s.records_out.get())),
                        ("exceptions_total", json!(s.exceptions.total())),
                        (
                            "last_exception",
                            json!(s.exceptions.last().unwrap_or_default()),
                        ),
                        (
                            "acks_unsent_at_stop_total",
                            json!(s.acks_unsent_at_stop.get()),
                        ),
                    ],
                );
                let reading = readings
                    .iter()
                    .find(|h| &*h.stream == stream && h.rules.iter().any(|rule| **rule == *r.id));
                if let Some(h) = reading {
                    put_metrics(
                        &mut out,
                        &format!("op_{stream}_shared"),
                        vec![
                            ("records_in_total", json!(h.records + h.exceptions)),
                            ("records_out_total", json!(h.records)),
                            ("exceptions_total", json!(h.exceptions)),
                            (
                                "last_exception",
                                json!(h.last_exception.clone().unwrap_or_default()),
                            ),
                            ("buffer_length", json!(h.queued_rows)),
                            ("rules", json!(h.rules.len())),
                            ("backpressure_wait_us_total", json!(h.waited_us)),
                        ],
                    );
                }
            }
            let q = &r.rule;
            put_metrics(
                &mut out,
                "op_project",
                vec![
                    ("records_in_total", json!(q.records_in.get())),
                    ("records_out_total", json!(q.records_out.get())),
                    (
                        "process_latency_us",
                        json!(q.process_time_us.get() / q.records_in.get().max(1)),
                    ),
                    ("exceptions_total", json!(q.exceptions.total())),
                    (
                        "last_exception",
                        json!(q.exceptions.last().unwrap_or_default()),
                    ),
                    ("filtered_total", json!(q.filtered.get())),
                    ("late_total", json!(q.late.get())),
                    ("windows_open_at_end", json!(q.windows_open_at_end.get())),
                    ("rows_held_at_end", json!(q.rows_held_at_end.get())),
                ],
            );
            for a in &r.actions {
                let m = &a.metrics;
                put_metrics(
                    &mut out,
                    &format!("sink_{}", a.name),
                    vec![
                        ("records_in_total", json!(m.records_in.get())),
                        ("records_out_total", json!(m.records_out.get())),
                        (
                            "process_latency_us",
                            json!(m.collect_time_ns.get() / 1000 / m.batches.get().max(1)),
                        ),
                        ("exceptions_total", json!(m.exceptions.total())),
                        (
                            "last_exception",
                            json!(m.exceptions.last().unwrap_or_default()),
                        ),
                        ("failed_total", json!(m.failed.get())),
                        ("dead_letter_total", json!(m.dead_lettered.get())),
                        ("cached", json!(m.cached.get())),
                        ("retries_total", json!(m.retries.get())),
                        ("restarts_total", json!(m.restarts.get())),
                        ("reloads_total", json!(m.reloads.get())),
                        ("version", json!(m.version())),
                        ("omitted_total", json!(m.omitted.get())),
                        ("resent_total", json!(m.resent.get())),
                        ("reload_refusals_total", json!(m.reload_refusals.get())),
                        ("version_loaded_at", json!(m.version_loaded_at())),
                        (
                            "swap_pause_max_us",
                            json!(
                                m.swap_pauses_ns
                                    .lock()
                                    .ok()
                                    .and_then(|p| p.iter().max().copied())
                                    .unwrap_or(0)
                                    / 1000
                            ),
                        ),
                        ("reload_history", json!(m.reload_history.list())),
                        ("dead_letter_history", json!(m.dead_letters.list())),
                        ("trap_history", json!(m.traps.list())),
                        ("cache_history", json!(m.cache_history.list())),
                    ],
                );
            }
        }
    }
    Ok(out)
}

/// The stream definitions of the registry, as the SQL compiler looks them up.
struct Defs(Vec<StreamDef>);

impl crate::sql::Catalog for Defs {
    fn stream(&self, name: &str) -> Option<&StreamDef> {
        self.0
            .iter()
            .find(|d| d.name.as_ref() == name)
            .or_else(|| self.0.iter().find(|d| d.name.eq_ignore_ascii_case(name)))
    }
}

fn defs(server: &Server, registry: &super::Registry) -> Defs {
    Defs(
        registry
            .streams
            .values()
            .filter_map(|e| {
                let kind = if e.table {
                    StreamKind::Table
                } else {
                    StreamKind::Stream
                };
                parse_one(server, &e.sql, kind).ok()
            })
            .collect(),
    )
}

/// The streams a rule reads, from its SQL.
fn rule_sources(server: &Server, registry: &super::Registry, rule: &Json) -> Vec<String> {
    let sql = rule.get("sql").and_then(Json::as_str).unwrap_or_default();
    crate::sql::compile(sql, &defs(server, registry))
        .map(|q| q.sources.iter().map(|s| s.stream.to_string()).collect())
        .unwrap_or_default()
}

fn action_names(rule: &Json) -> Vec<String> {
    rule.get("actions")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, a)| {
            a.as_object()
                .and_then(|o| o.keys().next())
                .map(|k| format!("{k}_{i}"))
        })
        .collect()
}

async fn rule_topo(State(server): State<Arc<Server>>, Path(id): Path<String>) -> Answer {
    let registry = server.registry.lock().await;
    let entry = registry
        .rules
        .get(&id)
        .ok_or_else(|| ApiError::rule_not_found(&id))?;
    let sources: Vec<String> = rule_sources(&server, &registry, &entry.rule)
        .into_iter()
        .map(|s| format!("source_{s}"))
        .collect();
    let mut edges = Map::new();
    for s in &sources {
        edges.insert(s.clone(), json!(["op_project"]));
    }
    let sinks: Vec<String> = action_names(&entry.rule)
        .into_iter()
        .map(|a| format!("sink_{a}"))
        .collect();
    edges.insert("op_project".into(), json!(sinks));
    json_answer(json!({ "sources": sources, "edges": edges }))
}

async fn validate_rule(State(server): State<Arc<Server>>, body: String) -> Answer {
    let invalid = |message: String| Ok((StatusCode::UNPROCESSABLE_ENTITY, message).into_response());
    let rule = match parse_body(&body) {
        Ok(rule) => rule,
        Err(e) => return invalid(e.message),
    };
    let id = match rule_id(&rule) {
        Ok(id) => id,
        Err(e) => return invalid(e.message),
    };
    let registry = server.registry.lock().await;
    if let Err(e) = server
        .check_rule(&registry, &format!("validate-{id}"), &rule)
        .await
    {
        return invalid(e.message);
    }
    json_answer(json!({
        "valid": true,
        "sources": rule_sources(&server, &registry, &rule),
    }))
}

// ---- rulesets ----

async fn import_ruleset(State(server): State<Arc<Server>>, body: String) -> Answer {
    let request = parse_body(&body)?;
    let content = match (
        request.get("content").and_then(Json::as_str),
        request.get("file").and_then(Json::as_str),
    ) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "Invalid body: Cannot specify both content and file",
            ));
        }
        (Some(content), None) => content.to_string(),
        (None, Some(file)) => {
            let path = file.strip_prefix("file://").unwrap_or(file);
            std::fs::read_to_string(path)
                .map_err(|e| ApiError::bad_request(format!("{path}: cannot read: {e}")))?
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "Invalid body: must specify content or file",
            ));
        }
    };
    let set = parse_body(&content)?;
    let section = |name: &str| -> Vec<(String, Json)> {
        set.get(name)
            .and_then(Json::as_object)
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    };
    let mut counts = [0usize; 3];
    let mut registry = server.registry.lock().await;
    for (i, (name, kind)) in [
        ("streams", StreamKind::Stream),
        ("tables", StreamKind::Table),
    ]
    .into_iter()
    .enumerate()
    {
        for (key, sql) in section(name) {
            let Some(sql) = sql.as_str() else { continue };
            if registry.streams.contains_key(&key) {
                continue;
            }
            let def = parse_one(&server, sql, kind)?;
            let entry = StreamEntry {
                sql: sql.to_string(),
                table: kind == StreamKind::Table,
            };
            store_def(&server, &def.name, &entry)?;
            registry.streams.insert(def.name.to_string(), entry);
            counts[i] += 1;
        }
    }
    for (id, rule) in section("rules") {
        let rule = match rule {
            Json::String(text) => parse_body(&text)?,
            other => other,
        };
        if registry.rules.contains_key(&id) {
            continue;
        }
        server.check_rule(&registry, &id, &rule).await?;
        let run = triggered(&rule);
        server.persist_rule(&id, &rule, run)?;
        registry.rules.insert(id.clone(), RuleEntry::new(rule));
        if run {
            server.start_locked(&mut registry, &id)?;
        }
        counts[2] += 1;
    }
    text(
        StatusCode::OK,
        format!(
            "imported {} streams, {} tables and {} rules",
            counts[0], counts[1], counts[2]
        ),
    )
}

async fn export_ruleset(State(server): State<Arc<Server>>) -> Answer {
    let registry = server.registry.lock().await;
    let mut streams = Map::new();
    let mut tables = Map::new();
    for (name, e) in &registry.streams {
        let target = if e.table { &mut tables } else { &mut streams };
        target.insert(name.clone(), json!(e.sql));
    }
    let rules: Map<String, Json> = registry
        .rules
        .iter()
        .map(|(id, e)| (id.clone(), json!(e.rule.to_string())))
        .collect();
    json_answer(json!({ "streams": streams, "tables": tables, "rules": rules }))
}
