//! The MQTT source's configuration keys over eKuiper's API: `GET /metadata/sources/yaml/mqtt`
//! lists every key (passwords and tokens shown as `******`), `PUT` and `DELETE
//! /metadata/sources/mqtt/confKeys/{key}` register and drop one (`GET` shows one). Keys given
//! over the API are kept in the store and win over the sections of `--mqtt-conf`; a stream
//! whose `CONF_KEY` names one connects with it from the next start of its rule on.
//!
//! Rules read one configuration file, so the server writes the merged sections to
//! `<data-dir>/.mqtt-conf.json` (owner-only: it holds passwords) whenever a key changes, and
//! every rule run reads that file.
//!
//! The MQTT sink's keys, as eKuiper has them: `GET /metadata/sinks/yaml/mqtt` and
//! `GET|PUT|DELETE /metadata/sinks/mqtt/confKeys/{key}`, kept in the store. An `mqtt` action
//! with `"resourceId": "<key>"` takes the key's props under its own (its own win); the server
//! resolves the reference each time it checks or starts the rule, so a changed key reaches a
//! rule at its next start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value as Json};

use super::store::Kind;
use super::{ApiError, Server, connections};

type Answer = Result<Response, ApiError>;

/// The fields of a section that name files: relative in `--mqtt-conf`, they start at its folder.
const PATH_FIELDS: [&str; 3] = ["certificationPath", "privateKeyPath", "rootCaPath"];

/// The merged file's name in the data directory.
const MERGED: &str = ".mqtt-conf.json";

/// The source a path names: only `mqtt` has configuration keys here.
fn check_source(name: &str) -> Result<(), ApiError> {
    if name == "mqtt" {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "source `{name}`: only the `mqtt` source has configuration keys"
        )))
    }
}

/// eKuiper's rule for a key: letters, digits, `-` and `_`.
pub(super) fn check_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ApiError::bad_request(format!(
            "Invalid confKey: `{key}`: only letters, digits, `-` and `_` are allowed"
        )));
    }
    Ok(())
}

/// The sections of the `--mqtt-conf` file, relative file paths made absolute.
fn file_sections(path: &Path) -> Result<BTreeMap<String, Map<String, Json>>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    if text.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    let options = serde_saphyr::options! { with_snippet: false };
    let mut sections: BTreeMap<String, Map<String, Json>> =
        serde_saphyr::from_str_with_options(&text, options)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new(""));
    for section in sections.values_mut() {
        for field in PATH_FIELDS {
            if let Some(Json::String(p)) = section.get_mut(field)
                && Path::new(p).is_relative()
            {
                *p = base.join(&*p).display().to_string();
            }
        }
    }
    Ok(sections)
}

/// Every section: those of `--mqtt-conf`, then those given over the API (whole sections win).
fn sections(server: &Server) -> Result<BTreeMap<String, Map<String, Json>>, ApiError> {
    let mut all = match &server.config.run.mqtt_conf {
        Some(path) => file_sections(path).map_err(ApiError::internal)?,
        None => BTreeMap::new(),
    };
    for (key, value) in server.store.all(Kind::ConfKeys)? {
        if let Ok(Json::Object(section)) = serde_json::from_str(&value) {
            all.insert(key, section);
        }
    }
    Ok(all)
}

/// Writes the merged file if the API has keys, and returns the configuration rules read: the
/// merged file, else `--mqtt-conf` as given.
pub(super) fn write_merged(server: &Server) -> Result<Option<PathBuf>, ApiError> {
    let given = server.store.all(Kind::ConfKeys)?;
    let merged = server.config.run.data_dir.join(MERGED);
    let mut all = sections(server)?;
    let selects = all.values().any(|s| s.contains_key(connections::SELECTOR));
    if given.is_empty() && !selects {
        let _ = std::fs::remove_file(&merged);
        return Ok(server.config.run.mqtt_conf.clone());
    }
    // Sections that name a connection take its props (see `connections`).
    let known = connections::all(server)?;
    for (key, section) in &mut all {
        connections::resolve(&known, section, &format!("mqtt source key `{key}`"))
            .map_err(ApiError::bad_request)?;
    }
    let text = serde_json::to_string_pretty(&all).map_err(|e| ApiError::internal(e.to_string()))?;
    let tmp = merged.with_extension("partial");
    let write = || -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        std::io::Write::write_all(&mut options.open(&tmp)?, text.as_bytes())?;
        std::fs::rename(&tmp, &merged)
    };
    write().map_err(|e| ApiError::internal(format!("{}: cannot write: {e}", merged.display())))?;
    Ok(Some(merged))
}

/// A section as the API shows it: passwords and tokens hidden, as eKuiper does.
pub(super) fn hidden(section: &Map<String, Json>) -> Json {
    Json::Object(
        section
            .iter()
            .map(|(k, v)| {
                let lower = k.to_ascii_lowercase();
                if lower.contains("password") || lower.contains("token") {
                    (k.clone(), Json::String("******".into()))
                } else {
                    (k.clone(), v.clone())
                }
            })
            .collect(),
    )
}

/// Keys by name as the API lists them: every section hidden.
fn shown_all(keys: &BTreeMap<String, Map<String, Json>>) -> Response {
    let all: Map<String, Json> = keys.iter().map(|(k, v)| (k.clone(), hidden(v))).collect();
    axum::Json(Json::Object(all)).into_response()
}

/// Key `key` of `owner` (`source mqtt`, `sink mqtt`), hidden; a 404 if there is none.
fn shown_one(keys: &BTreeMap<String, Map<String, Json>>, key: &str, owner: &str) -> Answer {
    keys.get(key)
        .map(|s| axum::Json(hidden(s)).into_response())
        .ok_or_else(|| ApiError::not_found(format!("confKey {key} not found for {owner}")))
}

/// `GET /metadata/sources/yaml/{name}`: every key of the source.
pub(super) async fn list(
    State(server): State<Arc<Server>>,
    UrlPath(name): UrlPath<String>,
) -> Answer {
    check_source(&name)?;
    Ok(shown_all(&sections(&server)?))
}

/// `GET /metadata/sources/{name}/confKeys/{key}`: one key.
pub(super) async fn describe(
    State(server): State<Arc<Server>>,
    UrlPath((name, key)): UrlPath<(String, String)>,
) -> Answer {
    check_source(&name)?;
    check_key(&key)?;
    shown_one(&sections(&server)?, &key, &format!("source {name}"))
}

/// `PUT /metadata/sources/{name}/confKeys/{key}`: registers (or replaces) a key.
pub(super) async fn register(
    State(server): State<Arc<Server>>,
    UrlPath((name, key)): UrlPath<(String, String)>,
    body: String,
) -> Answer {
    check_source(&name)?;
    check_key(&key)?;
    let section = super::api::parse_props(&body)?;
    // The section must be one the MQTT source can use.
    let settings: crate::mqtt::MqttSettings = serde_json::from_value(Json::Object(section.clone()))
        .map_err(|e| {
            ApiError::bad_request(format!("confKey {key}: not MQTT source settings: {e}"))
        })?;
    if let Some(server_url) = &settings.server {
        crate::mqtt::ServerUrl::parse(server_url)
            .map_err(|e| ApiError::bad_request(format!("confKey {key}: `server`: {e}")))?;
    }
    settings
        .qos(0)
        .map_err(|e| ApiError::bad_request(format!("confKey {key}: {e}")))?;
    connections::resolve(
        &connections::all(&server)?,
        &mut section.clone(),
        &format!("confKey {key}"),
    )
    .map_err(ApiError::bad_request)?;
    let text = Json::Object(section).to_string();
    server.store.put(Kind::ConfKeys, &key, &text)?;
    server.refresh_mqtt_conf()?;
    Ok(StatusCode::OK.into_response())
}

/// `DELETE /metadata/sources/{name}/confKeys/{key}`: drops a key given over the API.
pub(super) async fn remove(
    State(server): State<Arc<Server>>,
    UrlPath((name, key)): UrlPath<(String, String)>,
) -> Answer {
    check_source(&name)?;
    check_key(&key)?;
    let given = server.store.all(Kind::ConfKeys)?;
    if !given.iter().any(|(k, _)| k == &key) {
        let in_file = sections(&server)?.contains_key(&key);
        return Err(if in_file {
            ApiError::bad_request(format!(
                "confKey {key} comes from the --mqtt-conf file: change it there"
            ))
        } else {
            ApiError::not_found(format!("confKey {key} not found for source {name}"))
        });
    }
    server.store.remove(Kind::ConfKeys, &key)?;
    server.refresh_mqtt_conf()?;
    Ok(StatusCode::OK.into_response())
}

/// The sink a path names: only `mqtt` has configuration keys here.
fn check_sink(name: &str) -> Result<(), ApiError> {
    if name == "mqtt" {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "sink `{name}`: only the `mqtt` sink has configuration keys"
        )))
    }
}

/// The MQTT sink's keys given over the API.
fn sink_keys(server: &Server) -> Result<BTreeMap<String, Map<String, Json>>, ApiError> {
    Ok(parse_sink_keys(server.store.all(Kind::SinkConfKeys)?))
}

/// `rule` with the `resourceId` and `connectionSelector` of each `mqtt` action replaced by the
/// props of the key and connection they name (see [`resolve_mqtt_action`]); an unknown name is
/// a 400 naming the action.
pub(super) fn resolve_sink_keys(server: &Server, id: &str, rule: &Json) -> Result<Json, ApiError> {
    let refers = |action: &Json| {
        action.get("mqtt").is_some_and(|props| {
            props.get("resourceId").is_some() || props.get(connections::SELECTOR).is_some()
        })
    };
    let Some(actions) = rule.get("actions").and_then(Json::as_array) else {
        return Ok(rule.clone());
    };
    if !actions.iter().any(refers) {
        return Ok(rule.clone());
    }
    let keys = sink_keys(server)?;
    let known = connections::all(server)?;
    let mut resolved = rule.clone();
    let Some(actions) = resolved.get_mut("actions").and_then(Json::as_array_mut) else {
        return Ok(resolved);
    };
    for (index, action) in actions.iter_mut().enumerate() {
        let Some(Json::Object(props)) = action.get_mut("mqtt") else {
            continue;
        };
        let field = format!("rule `{id}`: actions[{index}].mqtt");
        resolve_mqtt_action(&keys, &known, props, &field).map_err(ApiError::bad_request)?;
    }
    Ok(resolved)
}

/// An `mqtt` action's props with the key its `resourceId` names taken under its own (its own
/// win), then the connection its `connectionSelector` (its own, else the key's) names, the
/// same way. `field` names the action in an error (`rule `r1`: actions[0].mqtt`). The server
/// and `oort run-rule` both resolve actions with this.
pub(crate) fn resolve_mqtt_action(
    keys: &BTreeMap<String, Map<String, Json>>,
    known: &connections::Connections,
    props: &mut Map<String, Json>,
    field: &str,
) -> Result<(), String> {
    if let Some(reference) = props.remove("resourceId") {
        let Json::String(key) = reference else {
            return Err(format!("{field}.resourceId: not a string"));
        };
        let Some(base) = keys.get(&key) else {
            return Err(format!(
                "{field}.resourceId: no confKey `{key}` for the mqtt sink (PUT \
                 /metadata/sinks/mqtt/confKeys/{key} registers one)"
            ));
        };
        for (name, value) in base {
            props.entry(name.clone()).or_insert_with(|| value.clone());
        }
    }
    connections::resolve(known, props, field)
}

/// The MQTT sink's keys from the store's entries.
pub(crate) fn parse_sink_keys(
    entries: Vec<(String, String)>,
) -> BTreeMap<String, Map<String, Json>> {
    entries
        .into_iter()
        .filter_map(|(key, value)| match serde_json::from_str(&value) {
            Ok(Json::Object(props)) => Some((key, props)),
            _ => None,
        })
        .collect()
}

/// `GET /metadata/sinks/yaml/{name}`: every key of the sink.
pub(super) async fn sink_list(
    State(server): State<Arc<Server>>,
    UrlPath(name): UrlPath<String>,
) -> Answer {
    check_sink(&name)?;
    Ok(shown_all(&sink_keys(&server)?))
}

/// `GET /metadata/sinks/{name}/confKeys/{key}`: one key.
pub(super) async fn sink_describe(
    State(server): State<Arc<Server>>,
    UrlPath((name, key)): UrlPath<(String, String)>,
) -> Answer {
    check_sink(&name)?;
    check_key(&key)?;
    shown_one(&sink_keys(&server)?, &key, &format!("sink {name}"))
}

/// `PUT /metadata/sinks/{name}/confKeys/{key}`: registers (or replaces) a key.
pub(super) async fn sink_register(
    State(server): State<Arc<Server>>,
    UrlPath((name, key)): UrlPath<(String, String)>,
    body: String,
) -> Answer {
    check_sink(&name)?;
    check_key(&key)?;
    let props = super::api::parse_props(&body)?;
    if props.contains_key("resourceId") {
        return Err(ApiError::bad_request(format!(
            "confKey {key}: a key cannot refer to another (`resourceId`)"
        )));
    }
    // What can be checked without a rule: the broker's address and the QoS. The rest is
    // checked with the action's own props when a rule using the key is created.
    match props.get("server") {
        None => {}
        Some(Json::String(url)) => {
            crate::mqtt::ServerUrl::parse(url)
                .map_err(|e| ApiError::bad_request(format!("confKey {key}: `server`: {e}")))?;
        }
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "confKey {key}: `server`: not a string"
            )));
        }
    }
    if let Some(qos) = props.get("qos")
        && qos.as_u64().is_none_or(|q| q > 2)
    {
        return Err(ApiError::bad_request(format!(
            "confKey {key}: `qos`: {qos} is not 0, 1 or 2"
        )));
    }
    connections::resolve(
        &connections::all(&server)?,
        &mut props.clone(),
        &format!("confKey {key}"),
    )
    .map_err(ApiError::bad_request)?;
    server
        .store
        .put(Kind::SinkConfKeys, &key, &Json::Object(props).to_string())?;
    Ok(StatusCode::OK.into_response())
}

/// `DELETE /metadata/sinks/{name}/confKeys/{key}`: drops a key (rules using it fail to start
/// until it is given again).
pub(super) async fn sink_remove(
    State(server): State<Arc<Server>>,
    UrlPath((name, key)): UrlPath<(String, String)>,
) -> Answer {
    check_sink(&name)?;
    check_key(&key)?;
    if !sink_keys(&server)?.contains_key(&key) {
        return Err(ApiError::not_found(format!(
            "confKey {key} not found for sink {name}"
        )));
    }
    server.store.remove(Kind::SinkConfKeys, &key)?;
    Ok(StatusCode::OK.into_response())
}
