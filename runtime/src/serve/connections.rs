//! Shared connections, as eKuiper's connection API has them: `POST /connections` with
//! `{"id", "typ", "props"}` creates one, `GET /connections` lists them, `GET|PUT|DELETE
//! /connections/{id}` shows, replaces and drops one; eKuiper's older form,
//! `GET /metadata/connections/yaml/mqtt` and `PUT|DELETE
//! /metadata/connections/mqtt/confKeys/{id}`, reaches the same connections. All are kept in the
//! store.
//!
//! A connection is a set of MQTT connection props (`server`, credentials, TLS, protocol
//! version) that sources and sinks refer to by id with `"connectionSelector": "<id>"` (eKuiper's
//! older `mqtt.<id>` works too): an `mqtt` action, an MQTT sink key (`resourceId`), or an MQTT
//! source key (`CONF_KEY`). The referrer takes the connection's props under its own (its own
//! win), each time a rule using it starts, so a changed connection reaches a rule at its next
//! start. Each rule still opens its own client with those props: Oort has no connection pool,
//! so the answers carry no live `status`. A connection something refers to cannot be dropped
//! (409 naming the referrers); an unknown id is a 400 naming the field that refers to it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value as Json, json};

use super::store::Kind;
use super::{ApiError, Server};

type Answer = Result<Response, ApiError>;

/// The connection types Oort has.
const TYPES: [&str; 1] = ["mqtt"];

/// The field a source or sink names a connection with.
pub(super) const SELECTOR: &str = "connectionSelector";

/// The connections, by id: their type and props.
pub(super) type Connections = BTreeMap<String, (String, Map<String, Json>)>;

/// Every connection in the store.
pub(super) fn all(server: &Server) -> Result<Connections, ApiError> {
    Ok(parse_entries(server.store.all(Kind::Connections)?))
}

/// Connections from the store's entries (`{"typ", "props"}` by id).
pub(crate) fn parse_entries(entries: Vec<(String, String)>) -> Connections {
    entries
        .into_iter()
        .filter_map(|(id, value)| {
            let Ok(Json::Object(mut entry)) = serde_json::from_str(&value) else {
                return None;
            };
            let typ = entry.get("typ")?.as_str()?.to_string();
            match entry.remove("props") {
                Some(Json::Object(props)) => Some((id, (typ, props))),
                _ => None,
            }
        })
        .collect()
}

/// The id a selector names: `<id>`, or eKuiper's older `mqtt.<id>`.
fn selected(selector: &str) -> &str {
    selector.strip_prefix("mqtt.").unwrap_or(selector)
}

/// `props` with the connection its `connectionSelector` names taken under its own props (its
/// own win), the selector removed. `field` names the props in an error (`actions[0].mqtt`).
pub(crate) fn resolve(
    connections: &Connections,
    props: &mut Map<String, Json>,
    field: &str,
) -> Result<(), String> {
    let Some(selector) = props.remove(SELECTOR) else {
        return Ok(());
    };
    let Json::String(selector) = selector else {
        return Err(format!("{field}.{SELECTOR}: not a string"));
    };
    let id = selected(&selector);
    let Some((_, base)) = connections.get(id) else {
        return Err(format!(
            "{field}.{SELECTOR}: no connection `{id}` (POST /connections creates one)"
        ));
    };
    for (name, value) in base {
        props.entry(name.clone()).or_insert_with(|| value.clone());
    }
    Ok(())
}

/// Whether `props` names connection `id`.
fn refers_to(props: &Map<String, Json>, id: &str) -> bool {
    props
        .get(SELECTOR)
        .and_then(Json::as_str)
        .is_some_and(|s| selected(s) == id)
}

/// What refers to connection `id`: rules' actions, MQTT sink keys and MQTT source keys.
fn referrers(server: &Server, id: &str) -> Result<Vec<String>, ApiError> {
    let internal = |e: super::store::StoreError| ApiError::internal(e.to_string());
    let mut found = Vec::new();
    for (rule, value) in server.store.all(Kind::Rules).map_err(internal)? {
        let saved: Json = serde_json::from_str(&value).unwrap_or(Json::Null);
        let actions = saved["rule"]["actions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for (i, action) in actions.iter().enumerate() {
            if let Some(Json::Object(props)) = action.get("mqtt")
                && refers_to(props, id)
            {
                found.push(format!("rule `{rule}` (actions[{i}].mqtt)"));
            }
        }
    }
    for (kind, what) in [
        (Kind::SinkConfKeys, "mqtt sink key"),
        (Kind::ConfKeys, "mqtt source key"),
    ] {
        for (key, value) in server.store.all(kind).map_err(internal)? {
            if let Ok(Json::Object(props)) = serde_json::from_str(&value)
                && refers_to(&props, id)
            {
                found.push(format!("{what} `{key}`"));
            }
        }
    }
    Ok(found)
}

/// A connection as the API shows it: secrets hidden, as eKuiper does.
fn shown(
    server: &Server,
    id: &str,
    typ: &str,
    props: &Map<String, Json>,
) -> Result<Json, ApiError> {
    Ok(json!({
        "id": id,
        "typ": typ,
        "props": super::confkeys::hidden(props),
        "isNamed": true,
        "refCount": referrers(server, id)?.len(),
    }))
}

/// Checks and stores a connection, then rewrites the MQTT configuration rules read (source
/// keys may refer to it).
fn put(server: &Server, id: &str, typ: &str, props: Map<String, Json>) -> Result<(), ApiError> {
    super::confkeys::check_key(id)?;
    if !TYPES.contains(&typ) {
        return Err(ApiError::bad_request(format!(
            "connection {id}: `typ` {typ:?} is not a connection type Oort has ({})",
            TYPES.join(", ")
        )));
    }
    if props.contains_key(SELECTOR) || props.contains_key("resourceId") {
        return Err(ApiError::bad_request(format!(
            "connection {id}: a connection cannot refer to another"
        )));
    }
    let settings: crate::mqtt::MqttSettings =
        serde_json::from_value(Json::Object(props.clone()))
            .map_err(|e| ApiError::bad_request(format!("connection {id}: `props`: {e}")))?;
    if let Some(url) = &settings.server {
        crate::mqtt::ServerUrl::parse(url)
            .map_err(|e| ApiError::bad_request(format!("connection {id}: `server`: {e}")))?;
    }
    let entry = json!({ "typ": typ, "props": props }).to_string();
    server.store.put(Kind::Connections, id, &entry)?;
    server.refresh_mqtt_conf()
}

/// The body of `POST` and `PUT`: `{"id", "typ", "props"}` (the id optional in a `PUT`).
type Request = (Option<String>, String, Map<String, Json>);

fn parse_request(body: &str) -> Result<Request, ApiError> {
    let Json::Object(mut body) = super::api::parse_body(body)? else {
        return Err(ApiError::bad_request("Invalid body: not a JSON object"));
    };
    let id = match body.remove("id") {
        None => None,
        Some(Json::String(id)) => Some(id),
        Some(_) => return Err(ApiError::bad_request("Invalid body: `id` is not a string")),
    };
    let typ = match body.remove("typ") {
        Some(Json::String(typ)) => typ,
        _ => {
            return Err(ApiError::bad_request(
                "Invalid body: `typ` (a string) is missing",
            ));
        }
    };
    let props = match body.remove("props") {
        None => Map::new(),
        Some(Json::Object(props)) => props,
        Some(_) => {
            return Err(ApiError::bad_request(
                "Invalid body: `props` is not an object",
            ));
        }
    };
    Ok((id, typ, props))
}

/// `POST /connections`: creates a connection (409 if the id is taken).
pub(super) async fn create(State(server): State<Arc<Server>>, body: String) -> Answer {
    let (id, typ, props) = parse_request(&body)?;
    let id = id.ok_or_else(|| ApiError::bad_request("Invalid body: `id` is missing"))?;
    if all(&server)?.contains_key(&id) {
        return Err(ApiError::conflict(format!(
            "connection {id} already exists"
        )));
    }
    put(&server, &id, &typ, props)?;
    Ok((StatusCode::CREATED, "success").into_response())
}

/// `GET /connections`: every connection.
pub(super) async fn list(State(server): State<Arc<Server>>) -> Answer {
    let mut out = Vec::new();
    for (id, (typ, props)) in all(&server)? {
        out.push(shown(&server, &id, &typ, &props)?);
    }
    Ok(axum::Json(Json::Array(out)).into_response())
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("connection {id} not found"))
}

/// `GET /connections/{id}`: one connection.
pub(super) async fn describe(
    State(server): State<Arc<Server>>,
    UrlPath(id): UrlPath<String>,
) -> Answer {
    let (typ, props) = all(&server)?.remove(&id).ok_or_else(|| not_found(&id))?;
    Ok(axum::Json(shown(&server, &id, &typ, &props)?).into_response())
}

/// `PUT /connections/{id}`: replaces a connection; rules using it take it at their next start.
pub(super) async fn update(
    State(server): State<Arc<Server>>,
    UrlPath(id): UrlPath<String>,
    body: String,
) -> Answer {
    let (body_id, typ, props) = parse_request(&body)?;
    if let Some(body_id) = body_id
        && body_id != id
    {
        return Err(ApiError::bad_request(format!(
            "Invalid body: `id` {body_id:?} is not the connection of the path ({id:?})"
        )));
    }
    if !all(&server)?.contains_key(&id) {
        return Err(not_found(&id));
    }
    put(&server, &id, &typ, props)?;
    Ok((StatusCode::OK, "success").into_response())
}

/// Drops connection `id` unless something refers to it.
fn drop_connection(server: &Server, id: &str) -> Result<(), ApiError> {
    if !all(server)?.contains_key(id) {
        return Err(not_found(id));
    }
    let users = referrers(server, id)?;
    if !users.is_empty() {
        return Err(ApiError::conflict(format!(
            "connection {id} is in use by {}: change them first",
            users.join(", ")
        )));
    }
    server.store.remove(Kind::Connections, id)?;
    server.refresh_mqtt_conf()
}

/// `DELETE /connections/{id}`.
pub(super) async fn remove(
    State(server): State<Arc<Server>>,
    UrlPath(id): UrlPath<String>,
) -> Answer {
    drop_connection(&server, &id)?;
    Ok((StatusCode::OK, "success").into_response())
}

/// The type a `/metadata/connections/...` path names.
fn check_type(name: &str) -> Result<(), ApiError> {
    if TYPES.contains(&name) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "connection type `{name}`: Oort has {}",
            TYPES.join(", ")
        )))
    }
}

/// `GET /metadata/connections/yaml/{type}`: the connections of a type, by id.
pub(super) async fn yaml(
    State(server): State<Arc<Server>>,
    UrlPath(name): UrlPath<String>,
) -> Answer {
    check_type(&name)?;
    let out: Map<String, Json> = all(&server)?
        .into_iter()
        .filter(|(_, (typ, _))| *typ == name)
        .map(|(id, (_, props))| (id, super::confkeys::hidden(&props)))
        .collect();
    Ok(axum::Json(Json::Object(out)).into_response())
}

/// `PUT /metadata/connections/{type}/confKeys/{id}`: creates or replaces a connection, its
/// body the props.
pub(super) async fn register(
    State(server): State<Arc<Server>>,
    UrlPath((name, id)): UrlPath<(String, String)>,
    body: String,
) -> Answer {
    check_type(&name)?;
    let props = super::api::parse_props(&body)?;
    put(&server, &id, &name, props)?;
    Ok(StatusCode::OK.into_response())
}

/// `DELETE /metadata/connections/{type}/confKeys/{id}`.
pub(super) async fn unregister(
    State(server): State<Arc<Server>>,
    UrlPath((name, id)): UrlPath<(String, String)>,
) -> Answer {
    check_type(&name)?;
    drop_connection(&server, &id)?;
    Ok(StatusCode::OK.into_response())
}
