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
//! For a quick first paint the page is served with its stylesheet inlined and holds the header
//! and the rules list's empty frame, in one face at one size (each other weight or size is one
//! more font lookup the renderer waits on): the browser paints them from the first answer,
//! without waiting on another request. The scripts are fetched and run only once that frame
//! is painted, and the list is drawn from the first list event rather than from a separate
//! `GET /rules`.

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

/// What the list shows of a rule: its status line and its counters.
trait Listed {
    /// Writes the status line into `status` (empty on entry) and returns `[rows in, rows out,
    /// exceptions, late rows]`.
    fn line(&self, status: &mut String) -> [u64; 4];
}

impl Listed for RuleEntry {
    fn line(&self, status: &mut String) -> [u64; 4] {
        let Ok(state) = self.state.lock() else {
            super::write_status_line(None, status);
            return [0; 4];
        };
        super::write_status_line(state.phase.as_ref(), status);
        let [mut rows_in, mut rows_out, mut exceptions, mut late] = [0; 4];
        if let Some((rules, _)) = &state.live {
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
        [rows_in, rows_out, exceptions, late]
    }
}

/// A rule's line as last sent on a list stream.
#[derive(Debug, Default, PartialEq)]
struct Line {
    status: String,
    counts: [u64; 4],
}

/// One list stream's memory of what it sent, to send only what changed.
///
/// Built for a tick with many rules: the rules are walked in id order beside the lines last
/// sent (also in id order), a line is compared where it lies, and the event is written
/// straight into a buffer kept from tick to tick. In the steady state (no rule added or
/// dropped, no status changed) a tick allocates nothing per rule.
#[derive(Debug, Default)]
struct ListFeed {
    /// The lines last sent, in id order.
    sent: Vec<(String, Line)>,
    /// The lines being built this tick (empty between ticks, its capacity kept).
    next: Vec<(String, Line)>,
    /// A rule's status line this tick.
    status: String,
    /// The event's data.
    data: Vec<u8>,
}

impl ListFeed {
    /// The data of the next `rules` event at `t` (unix ms): `{"t", "rules": {id: [status,
    /// rows in, rows out, exceptions, late rows] | null}}` with the rules of `now` (in id order)
    /// whose line changed since the last event, and `null` for those sent before and gone.
    fn event<'a, R: Listed + 'a>(
        &mut self,
        t: u64,
        now: impl IntoIterator<Item = (&'a String, &'a R)>,
    ) -> &str {
        use std::io::Write;
        let Self {
            sent,
            next,
            status,
            data,
        } = self;
        data.clear();
        let _ = write!(data, r#"{{"t":{t},"rules":{{"#);
        let mut first = true;
        let mut key = |data: &mut Vec<u8>, id: &str| {
            if !std::mem::take(&mut first) {
                data.push(b',');
            }
            let _ = serde_json::to_writer(&mut *data, id);
            data.push(b':');
        };
        let mut before = sent.drain(..).peekable();
        for (id, rule) in now {
            status.clear();
            let counts = rule.line(status);
            while let Some((gone, _)) = before.next_if(|(s, _)| s < id) {
                key(data, &gone);
                data.extend_from_slice(b"null");
            }
            let entry = match before.next_if(|(s, _)| s == id) {
                Some((id, line)) if line.status == *status && line.counts == counts => {
                    next.push((id, line));
                    continue;
                }
                Some((id, mut line)) => {
                    line.status.clone_from(status);
                    line.counts = counts;
                    (id, line)
                }
                None => (
                    id.clone(),
                    Line {
                        status: status.clone(),
                        counts,
                    },
                ),
            };
            key(data, id);
            data.push(b'[');
            let _ = serde_json::to_writer(&mut *data, status.as_str());
            for n in counts {
                let _ = write!(data, ",{n}");
            }
            data.push(b']');
            next.push(entry);
        }
        for (gone, _) in before {
            key(data, &gone);
            data.extend_from_slice(b"null");
        }
        data.extend_from_slice(b"}}");
        std::mem::swap(sent, next);
        // Only JSON was written: strings by serde_json, the rest ASCII.
        std::str::from_utf8(data).unwrap_or_default()
    }
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

/// An event stream that ends when the server stops (the browser reconnects to the next one).
fn sse(
    server: &Server,
    stream: impl Stream<Item = Result<Event, Infallible>> + Send + 'static,
) -> EventStream {
    use futures_util::StreamExt;
    Sse::new(stream.take_until(server.stopped()))
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn list_events(State(server): State<Arc<Server>>) -> EventStream {
    let stopped = Arc::clone(&server);
    let start = (server, ListFeed::default(), ticker());
    sse(
        &stopped,
        futures_util::stream::unfold(start, |(server, mut feed, mut ticker)| async move {
            ticker.tick().await;
            let event = {
                let registry = server.registry.lock().await;
                let data = feed.event(unix_ms(), &registry.rules);
                Event::default().event("rules").data(data)
            };
            Some((Ok(event), (server, feed, ticker)))
        }),
    )
}

async fn rule_events(
    State(server): State<Arc<Server>>,
    Path(id): Path<String>,
) -> Result<EventStream, ApiError> {
    if !server.registry.lock().await.rules.contains_key(&id) {
        return Err(ApiError::rule_not_found(&id));
    }
    // The state: the server, the rule, its last status sent (`None` once it is dropped).
    let stopped = Arc::clone(&server);
    let start = (server, id, Some(Map::new()), ticker());
    Ok(sse(
        &stopped,
        futures_util::stream::unfold(start, |(server, id, before, mut ticker)| async move {
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
        }),
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn the_page_is_served_with_its_stylesheet_inlined() {
        assert!(INDEX.contains(STYLE_LINK));
        assert!(!PAGE.contains(STYLE_LINK));
        assert!(PAGE.contains(STYLE));
    }

    /// The first frame is the page itself: the header and the list's empty frame are in the
    /// HTML, and no script or stylesheet is fetched before it can paint.
    #[test]
    fn the_page_paints_its_header_and_the_list_frame_without_its_scripts() {
        for part in [
            "<header>",
            r#"<table id="rules">"#,
            "<th>Rule</th>",
            "Loading the rules…",
        ] {
            assert!(PAGE.contains(part), "{part}");
        }
        for tag in PAGE.split("<script").skip(1) {
            let tag = &tag[..tag.find('>').expect("a script tag")];
            assert!(
                !tag.contains("src="),
                "a script fetched before the paint: {tag}"
            );
        }
        assert!(!PAGE.contains(r#"rel="stylesheet""#));
        // A preload is fetched and parsed before the paint too: the modules are asked for
        // by the page's script once the first frame is painted.
        assert!(!PAGE.contains(r#"<link rel="modulepreload""#));
        assert!(!PAGE.contains(r#"type="module""#));
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

    /// A rule of the list as a test sets it.
    struct Fake(&'static str, [u64; 4]);

    impl Listed for Fake {
        fn line(&self, status: &mut String) -> [u64; 4] {
            status.push_str(self.0);
            self.1
        }
    }

    fn event(feed: &mut ListFeed, t: u64, rules: &BTreeMap<String, Fake>) -> Json {
        serde_json::from_str(feed.event(t, rules)).expect("the event is JSON")
    }

    #[test]
    fn the_list_feed_sends_everything_then_what_changed_and_null_for_what_went() {
        let mut rules: BTreeMap<String, Fake> = [
            ("a".into(), Fake("Running", [1, 1, 0, 0])),
            (
                "b \"quoted\"\n".into(),
                Fake("Stopped: it \"ended\"", [0; 4]),
            ),
            ("c".into(), Fake("Running", [5, 4, 1, 0])),
        ]
        .into();
        let mut feed = ListFeed::default();
        assert_eq!(
            event(&mut feed, 1000, &rules),
            json!({"t": 1000, "rules": {
                "a": ["Running", 1, 1, 0, 0],
                "b \"quoted\"\n": ["Stopped: it \"ended\"", 0, 0, 0, 0],
                "c": ["Running", 5, 4, 1, 0]}})
        );
        assert_eq!(
            event(&mut feed, 2000, &rules),
            json!({"t": 2000, "rules": {}}),
            "nothing changed"
        );
        // A counter moves, a status changes, a rule goes before and after the others, one
        // comes.
        rules.get_mut("c").unwrap().1[0] = 6;
        rules.get_mut("b \"quoted\"\n").unwrap().0 = "Running";
        rules.remove("a");
        rules.insert("aa".into(), Fake("Starting", [0; 4]));
        assert_eq!(
            event(&mut feed, 3000, &rules),
            json!({"t": 3000, "rules": {
                "a": null,
                "aa": ["Starting", 0, 0, 0, 0],
                "b \"quoted\"\n": ["Running", 0, 0, 0, 0],
                "c": ["Running", 6, 4, 1, 0]}})
        );
        rules.remove("c");
        rules.remove("aa");
        assert_eq!(
            event(&mut feed, 4000, &rules),
            json!({"t": 4000, "rules": {"aa": null, "c": null}})
        );
        rules.clear();
        assert_eq!(
            event(&mut feed, 5000, &rules),
            json!({"t": 5000, "rules": {"b \"quoted\"\n": null}})
        );
        assert_eq!(
            event(&mut feed, 6000, &rules),
            json!({"t": 6000, "rules": {}})
        );
    }

    /// What one update of a list of 1,000 rules costs to build, every rule changed (the
    /// console's worst steady case): printed, with the size of the event.
    #[test]
    fn one_list_update_of_a_thousand_rules() {
        let mut rules: BTreeMap<String, Fake> = (0..1000)
            .map(|i| (format!("rule{i:04}"), Fake("Running", [i, i, 0, 0])))
            .collect();
        let mut feed = ListFeed::default();
        let first = feed.event(0, &rules).len();
        let ticks = 200;
        let mut size = 0;
        let started = std::time::Instant::now();
        for tick in 1..=ticks {
            for rule in rules.values_mut() {
                rule.1[0] += 10;
                rule.1[1] += 10;
            }
            let data = feed.event(tick * 1000, &rules);
            size = data.len();
            assert!(data.ends_with("]}}"), "every rule changed");
        }
        let per_event = started.elapsed() / ticks as u32;
        let parsed = event(&mut feed, 0, &rules);
        assert_eq!(parsed["rules"].as_object().map(Map::len), Some(0));
        eprintln!(
            "FIGURES one list update of 1,000 rules, every one changed: {:.1} µs to build \
             ({size} bytes; the first, {first} bytes), counters read not included",
            per_event.as_secs_f64() * 1e6
        );
    }
}
