//! The web console at `/ui`, and the live updates it shows.
//!
//! The console is plain HTML, CSS and JavaScript modules written by hand (`runtime/ui/`), built
//! into the binary with `include_str!`: no front-end toolchain at build time, nothing to serve
//! but these files. It talks to the server with the same REST API as any client, and the
//! server pushes live counters to it as server-sent events, once a second and only what
//! changed since the last event of that connection:
//!
//! - `GET /events/rules`: event `rules`, `{"t": unix ms, "rules": {id: [status, rows in,
//!   rows out, exceptions, late rows] | null when dropped}}`;
//! - `GET /events/rules/{id}`: event `status`, `{"t": unix ms, "status": {key: value}}` with
//!   the keys of `GET /rules/{id}/status` that changed; event `dropped` when the rule goes.
//!
//! The event routes sit behind the token check like the rest of the API (the console reads
//! them with `fetch`, sending the bearer token in a header, so the token never lands in a
//! URL or a log); the console's own files are served without a token: they hold no data.
//!
//! For a quick first paint the page is served with its stylesheet inlined (the browser paints
//! the shell from the first answer, without waiting on another request), its scripts are
//! modules (they never block the paint), and the list is drawn from the first list event
//! rather than from a separate `GET /rules`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::Stream;
use serde_json::{Map, Value as Json, json};

use super::{ApiError, RuleEntry, Server};
use crate::stream::StreamKind;

/// How often live updates go out.
const TICK: Duration = Duration::from_secs(1);

const INDEX: &str = include_str!("../../ui/index.html");
const APP: &str = include_str!("../../ui/app.js");
const LIVE: &str = include_str!("../../ui/live.js");
const STYLE: &str = include_str!("../../ui/style.css");
/// The stylesheet link of `index.html`, replaced by the stylesheet itself when served.
const STYLE_LINK: &str = r#"<link rel="stylesheet" href="/ui/style.css">"#;

/// `index.html` with the stylesheet inlined: nothing else blocks the first paint.
static PAGE: LazyLock<String> =
    LazyLock::new(|| INDEX.replace(STYLE_LINK, &format!("<style>\n{STYLE}</style>")));

/// The console's files (no token needed: they hold no data).
pub(super) fn assets() -> Router {
    Router::new()
        .route(
            "/ui",
            get(|| file("text/html; charset=utf-8", PAGE.as_str())),
        )
        .route(
            "/ui/",
            get(|| file("text/html; charset=utf-8", PAGE.as_str())),
        )
        .route("/ui/app.js", get(|| file("text/javascript", APP)))
        .route("/ui/live.js", get(|| file("text/javascript", LIVE)))
        .route("/ui/style.css", get(|| file("text/css", STYLE)))
}

async fn file(content_type: &'static str, body: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The live-update routes (behind the token check).
pub(super) fn events(server: Arc<Server>) -> Router {
    Router::new()
        .route("/events/rules", get(list_events))
        .route("/events/rules/{id}", get(rule_events))
        .route("/streams/validate", post(validate_stream))
        .with_state(server)
}

/// `POST /streams/validate {"sql"}`: 200 `{"valid", "name", "kind"}`, or 422 with the parser's
/// message (naming line and column), as `POST /rules/validate` answers for rules.
async fn validate_stream(State(server): State<Arc<Server>>, body: String) -> Response {
    let invalid = |message: String| (StatusCode::UNPROCESSABLE_ENTITY, message).into_response();
    let sql = match super::api::parse_body(&body).map(|b| b.get("sql").cloned()) {
        Ok(Some(Json::String(sql))) => sql,
        Ok(_) => return invalid("Invalid body: field `sql` (a string) is required".into()),
        Err(e) => return invalid(e.message),
    };
    let kind = if sql
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("create table")
    {
        StreamKind::Table
    } else {
        StreamKind::Stream
    };
    match super::api::parse_one(&server, &sql, kind) {
        Ok(def) => axum::Json(json!({
            "valid": true,
            "name": def.name.as_ref(),
            "kind": super::stream_kind_name(def.kind),
        }))
        .into_response(),
        Err(e) => invalid(e.message),
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn ticker() -> tokio::time::Interval {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    interval
}

/// A rule as the list shows it: `[status, rows in, rows out, exceptions, late rows]`.
fn summary(entry: &RuleEntry) -> Json {
    let status = entry.status_line();
    let (mut rows_in, mut rows_out, mut exceptions, mut late) = (0, 0, 0, 0);
    if let Ok(state) = entry.state.lock()
        && let Some((rules, _)) = &state.live
    {
        for r in rules {
            rows_in += r.source.records_out.get() + r.source.exceptions.total();
            exceptions += r.source.exceptions.total() + r.rule.exceptions.total();
            late += r.rule.late.get();
            for a in &r.actions {
                rows_out += a.metrics.records_out.get();
                exceptions += a.metrics.exceptions.total();
            }
        }
    }
    json!([status, rows_in, rows_out, exceptions, late])
}

/// The entries of `now` that differ from `before`, and `null` for those gone.
fn changes<'a>(
    before: impl Fn(&str) -> Option<&'a Json>,
    now: impl Iterator<Item = (&'a String, &'a Json)>,
    gone: impl Iterator<Item = &'a String>,
) -> Map<String, Json> {
    let mut out = Map::new();
    for (key, value) in now {
        if before(key) != Some(value) {
            out.insert(key.clone(), value.clone());
        }
    }
    for key in gone {
        out.insert(key.clone(), Json::Null);
    }
    out
}

type EventStream = Response;

fn sse(stream: impl Stream<Item = Result<Event, Infallible>> + Send + 'static) -> EventStream {
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn list_events(State(server): State<Arc<Server>>) -> EventStream {
    let start = (server, BTreeMap::<String, Json>::new(), ticker());
    sse(futures_util::stream::unfold(
        start,
        |(server, before, mut ticker)| async move {
            ticker.tick().await;
            let now: BTreeMap<String, Json> = {
                let registry = server.registry.lock().await;
                registry
                    .rules
                    .iter()
                    .map(|(id, e)| (id.clone(), summary(e)))
                    .collect()
            };
            let rules = changes(
                |k| before.get(k),
                now.iter(),
                before.keys().filter(|k| !now.contains_key(*k)),
            );
            let data = json!({ "t": unix_ms(), "rules": rules }).to_string();
            let event = Event::default().event("rules").data(data);
            Some((Ok(event), (server, now, ticker)))
        },
    ))
}

async fn rule_events(
    State(server): State<Arc<Server>>,
    Path(id): Path<String>,
) -> Result<EventStream, ApiError> {
    if !server.registry.lock().await.rules.contains_key(&id) {
        return Err(ApiError::rule_not_found(&id));
    }
    // The state: the server, the rule, its last status sent (`None` once it is dropped).
    let start = (server, id, Some(Map::new()), ticker());
    Ok(sse(futures_util::stream::unfold(
        start,
        |(server, id, before, mut ticker)| async move {
            let before = before?;
            ticker.tick().await;
            let now = {
                let registry = server.registry.lock().await;
                registry
                    .rules
                    .get(&id)
                    .map(|entry| super::api::status_map(entry, &server.shared))
                    .transpose()
                    .ok()
                    .flatten()
            };
            let Some(now) = now else {
                let event = Event::default()
                    .event("dropped")
                    .data(json!(id).to_string());
                return Some((Ok(event), (server, id, None, ticker)));
            };
            let status = changes(|k| before.get(k), now.iter(), std::iter::empty());
            let data = json!({ "t": unix_ms(), "status": status }).to_string();
            let event = Event::default().event("status").data(data);
            Some((Ok(event), (server, id, Some(now), ticker)))
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_served_with_its_stylesheet_inlined() {
        assert!(INDEX.contains(STYLE_LINK));
        assert!(!PAGE.contains(STYLE_LINK));
        assert!(PAGE.contains(STYLE));
    }

    #[test]
    fn changes_hold_what_differs_and_null_for_what_went() {
        let before: BTreeMap<String, Json> =
            [("a".into(), json!(1)), ("b".into(), json!(2))].into();
        let now: BTreeMap<String, Json> = [("a".into(), json!(1)), ("c".into(), json!(3))].into();
        let out = changes(
            |k| before.get(k),
            now.iter(),
            before.keys().filter(|k| !now.contains_key(*k)),
        );
        assert_eq!(Json::Object(out), json!({ "c": 3, "b": null }));
    }
}
