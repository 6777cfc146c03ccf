//! eKuiper's own tests of its aggregate, analytic, state, set-returning and window functions
//! (`internal/binder/function/funcs_{agg,inc_agg,acc,analytic,global_state,srf,window}_test.go`),
//! ported as data and run through Oort's real statement path.
//!
//! Each file in `tests/ekuiper_aggregates/` holds the cases of one Go file; each case names the
//! Go test function it comes from (`"test"`) and is one of these kinds:
//!
//! - `aggregate`: `call` over the group of `rows`, as a window's aggregate (`SELECT {call} AS r
//!   FROM e GROUP BY TUMBLINGWINDOW(ms, 1000)` in event time, every row in the first window),
//!   run twice: by a runner that aggregates rows as they arrive (where the aggregates allow it)
//!   and by one that keeps the window's rows (as under `qos`).
//!   `expect` is the value of `r`, or `error` a text the error contains. An empty `rows` is a
//!   window no row falls in: the middle one of three tumbling windows in event time.
//! - `sequence`: `call` on each of `rows` in turn, without a window
//!   (`SELECT {call} AS r FROM s`), so that analytic functions keep their per-rule and
//!   per-partition state; `expect` has one entry per row: the value of `r`,
//!   `{"$error": "text"}` (in Oort's words or in the words sent to the actions, eKuiper's) or
//!   `{"$filtered": true}` (WHERE or HAVING dropped the row).
//! - `output`: every row the statement sends for `rows` (objects), in order.
//! - `compile`: whether `SELECT {call} AS r FROM s GROUP BY COUNTWINDOW(2)` compiles: `error` a
//!   text the error contains, or none.
//!
//! A case may give the statement as `sql`, with `{call}` where the call goes. A row's field `ts`
//! is its timestamp (ms); without one a row's timestamp is its index.
//!
//! Values compare with their types: `150` (a whole number) is not `150.0` (a float). A case where
//! Oort keeps a different answer from eKuiper's carries `differs` (why) and `ekuiper` (eKuiper's
//! answer); `expect` is then Oort's documented answer, and the case still fails if that changes.
//! A case that cannot be expressed as a statement (it needs a fault injected into eKuiper's state
//! store, say) carries `not_ported` and why.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oort_sql::stream::{StreamDef, parse_streams};
use oort_sql::{Catalog, EvalCtx, QueryRunner, compile};
use oort_value::{Message, Row, Value};
use serde_json::{Value as Json, json};

const DDL: &str = r#"CREATE STREAM s () WITH (TYPE="memory", DATASOURCE="t");
CREATE STREAM e () WITH (TYPE="memory", DATASOURCE="u", TIMESTAMP="ts");"#;

struct Streams(Vec<StreamDef>);

impl Catalog for Streams {
    fn stream(&self, name: &str) -> Option<&StreamDef> {
        self.0.iter().find(|d| &*d.name == name)
    }
}

/// What one case gave.
enum Outcome {
    Pass,
    Fail(String),
}

#[derive(Default)]
struct Tally {
    passed: usize,
    differs: usize,
    not_ported: usize,
    failures: Vec<String>,
}

#[test]
fn ekuiper_aggregate_analytic_and_srf_tests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ekuiper_aggregates");
    let streams = Streams(parse_streams(DDL, "streams.sql", Path::new(".")).expect("the DDL"));
    let only = std::env::var("OORT_CASE").ok();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the case folder")
        .map(|e| e.expect("a folder entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 7, "one case file per Go test file");
    let mut tally = Tally::default();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(file).expect("a case file");
        let doc: Json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let cases = doc["cases"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: no `cases` array"));
        let mut seen = 0;
        for case in cases {
            let test = case["test"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: a case without `test`"));
            if only.as_deref().is_some_and(|o| !test.contains(o)) {
                continue;
            }
            seen += 1;
            if let Some(why) = malformed(case) {
                tally.failures.push(format!("{name}: {test}: {why}"));
                continue;
            }
            if case.get("not_ported").is_some() {
                tally.not_ported += 1;
                continue;
            }
            let call = case["call"].as_str().unwrap_or("");
            match run_case(case, &streams) {
                Outcome::Pass if case.get("differs").is_some() => tally.differs += 1,
                Outcome::Pass => tally.passed += 1,
                Outcome::Fail(why) => tally
                    .failures
                    .push(format!("{name}: {test}: `{call}`: {why}")),
            }
        }
        assert!(only.is_some() || seen > 0, "{name}: no cases");
    }
    println!(
        "eKuiper aggregate tests: {} passed, {} passed with a kept difference, {} not portable, {} failed",
        tally.passed,
        tally.differs,
        tally.not_ported,
        tally.failures.len()
    );
    if !tally.failures.is_empty() {
        let mut report = String::new();
        for f in &tally.failures {
            let _ = writeln!(report, "  {f}");
        }
        panic!("{} cases failed:\n{report}", tally.failures.len());
    }
}

/// What is wrong with a case as written: an unknown key (a typo would leave a check out), a kept
/// difference without eKuiper's answer.
fn malformed(case: &Json) -> Option<String> {
    const KEYS: &[&str] = &[
        "test",
        "kind",
        "call",
        "sql",
        "rows",
        "expect",
        "error",
        "differs",
        "ekuiper",
        "ekuiper_last",
        "not_ported",
    ];
    let map = case.as_object()?;
    if let Some(key) = map.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Some(format!("unknown key `{key}`"));
    }
    if map.contains_key("differs") && !map.contains_key("ekuiper") {
        return Some("`differs` without `ekuiper` (eKuiper's answer)".into());
    }
    if !map.contains_key("not_ported")
        && map.get("kind").and_then(Json::as_str) != Some("compile")
        && !map.contains_key("expect")
        && !map.contains_key("error")
    {
        return Some("neither `expect` nor `error`".into());
    }
    None
}

fn run_case(case: &Json, streams: &Streams) -> Outcome {
    let kind = case["kind"].as_str().unwrap_or("");
    let call = case["call"].as_str().unwrap_or("");
    let rows = input_rows(case);
    let template = case["sql"].as_str().map(str::to_owned).unwrap_or_else(|| {
        match kind {
            "aggregate" if rows.is_empty() => {
                "SELECT {call} AS r FROM e GROUP BY TUMBLINGWINDOW(ms, 10)".to_owned()
            }
            "aggregate" => "SELECT {call} AS r FROM e GROUP BY TUMBLINGWINDOW(ms, 1000)".to_owned(),
            // An aggregate compiles in a window only.
            "compile" => "SELECT {call} AS r FROM s GROUP BY COUNTWINDOW(2)".to_owned(),
            _ => "SELECT {call} AS r FROM s".to_owned(),
        }
    });
    let sql = template.replace("{call}", call);
    let compiled = compile(&sql, streams);
    if kind == "compile" {
        return match (compiled, case["error"].as_str()) {
            (Ok(_), None) => Outcome::Pass,
            (Ok(_), Some(want)) => Outcome::Fail(format!("compiled; want an error with `{want}`")),
            (Err(e), Some(want)) if e.to_string().contains(want) => Outcome::Pass,
            (Err(e), want) => Outcome::Fail(format!("error `{e}`; want {want:?}")),
        };
    }
    let query = match compiled {
        Ok(q) => q,
        Err(e) => return Outcome::Fail(format!("`{sql}` does not compile: {e}")),
    };
    let ctx = EvalCtx {
        now_ms: 0,
        meta: &Value::Null,
    };
    match kind {
        "aggregate" => {
            let got = if rows.is_empty() {
                vec![empty_window_value(&query)]
            } else {
                [true, false]
                    .into_iter()
                    .map(|on_arrival| window_value(&query, on_arrival, &rows))
                    .collect()
            };
            for (got, mode) in got
                .into_iter()
                .zip(["on arrival", "from the window's rows"])
            {
                let verdict = match (&got, case.get("expect"), case["error"].as_str()) {
                    (Ok(v), Some(want), None) if same(v, want) => None,
                    (Err(e), None, Some(want)) if e.contains(want) => None,
                    (got, want, want_error) => Some(format!(
                        "{mode}: got {got:?}; want {}",
                        want_error
                            .map(|e| format!("an error with `{e}`"))
                            .unwrap_or_else(|| format!("{}", want.unwrap_or(&Json::Null)))
                    )),
                };
                if let Some(why) = verdict {
                    return Outcome::Fail(why);
                }
            }
            Outcome::Pass
        }
        "sequence" => {
            let Some(want) = case["expect"].as_array() else {
                return Outcome::Fail("`expect` must list one result per row".into());
            };
            if want.len() != rows.len() {
                return Outcome::Fail(format!(
                    "{} rows but {} expected results",
                    rows.len(),
                    want.len()
                ));
            }
            let mut runner = QueryRunner::new(query, false, 0, HashMap::new());
            for (i, (row, want)) in rows.into_iter().zip(want).enumerate() {
                let ctx = EvalCtx {
                    now_ms: row.timestamp_ms,
                    meta: &Value::Null,
                };
                let mut out = Vec::new();
                let outcome = runner.push(0, vec![row], &ctx, &mut out);
                let got = match (&out[..], outcome.errors.first()) {
                    ([], Some(e)) => json!({"$error": e.message(), "$sent": e.sent()}),
                    // WHERE dropped the row, or HAVING its window.
                    ([], None) => json!({"$filtered": true}),
                    ([Message::Row(r)], None) => r.get("r").map_or(Json::Null, Value::to_json),
                    ([Message::Rows(rs)], None) if rs.len() == 1 => {
                        rs[0].get("r").map_or(Json::Null, Value::to_json)
                    }
                    (other, e) => {
                        return Outcome::Fail(format!("row {i}: sent {other:?}, error {e:?}"));
                    }
                };
                // An error matches Oort's text or the one sent (eKuiper's).
                let ok = match (want.get("$error").and_then(Json::as_str), &got["$error"]) {
                    (Some(w), Json::String(g)) => {
                        g.contains(w) || got["$sent"].as_str().is_some_and(|s| s.contains(w))
                    }
                    _ => same(&got, want),
                };
                if !ok {
                    return Outcome::Fail(format!("row {i}: got {got}; want {want}"));
                }
            }
            Outcome::Pass
        }
        "output" => {
            let mut runner = QueryRunner::new(query, false, 0, HashMap::new());
            let mut out = Vec::new();
            let mut errors = Vec::new();
            for row in rows {
                let ctx = EvalCtx {
                    now_ms: row.timestamp_ms,
                    meta: &Value::Null,
                };
                let outcome = runner.push(0, vec![row], &ctx, &mut out);
                errors.extend(outcome.errors.iter().map(|e| e.message().to_owned()));
            }
            errors.extend(
                runner
                    .finish(&ctx, &mut out)
                    .errors
                    .iter()
                    .map(|e| e.message().to_owned()),
            );
            let mut got = Vec::new();
            for m in &out {
                match m {
                    Message::Row(r) => got.push(r.to_object().to_json()),
                    Message::Rows(rs) => got.extend(rs.iter().map(|r| r.to_object().to_json())),
                    Message::Error { message, .. } => errors.push(message.to_string()),
                }
            }
            let got = Json::Array(got);
            match (case["error"].as_str(), errors.first()) {
                (Some(want), Some(e)) if e.contains(want) => Outcome::Pass,
                (None, None) if same(&got, &case["expect"]) => Outcome::Pass,
                (_, e) => Outcome::Fail(format!(
                    "sent {got}, error {e:?}; want {} {:?}",
                    case["expect"], case["error"]
                )),
            }
        }
        other => Outcome::Fail(format!("unknown kind `{other}`")),
    }
}

/// The value of `r` for a tumbling window (event time) that no row falls in, between two
/// windows of a row each.
fn empty_window_value(query: &oort_sql::Query) -> Result<Json, String> {
    let mut runner = QueryRunner::new(query.clone(), true, 0, HashMap::new());
    let ctx = EvalCtx {
        now_ms: 0,
        meta: &Value::Null,
    };
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for ts in [0, 25] {
        let row = Row::from_pairs(vec![(Arc::from("ts"), Value::Int(ts))], ts);
        errors.extend(runner.push(0, vec![row], &ctx, &mut out).errors);
    }
    errors.extend(runner.finish(&ctx, &mut out).errors);
    if let Some(e) = errors.first() {
        return Err(e.message().to_owned());
    }
    match &out[..] {
        [_, Message::Rows(rs), _] if rs.len() == 1 => {
            Ok(rs[0].get("r").map_or(Json::Null, Value::to_json))
        }
        other => Err(format!("three windows expected, got {other:?}")),
    }
}

/// The value of `r` in the one result of a tumbling window (event time) over `rows`.
fn window_value(query: &oort_sql::Query, on_arrival: bool, rows: &[Row]) -> Result<Json, String> {
    let query = query.clone();
    let mut runner = if on_arrival {
        QueryRunner::new(query, true, 0, HashMap::new())
    } else {
        QueryRunner::checkpointable(query, true, 0, HashMap::new())
    };
    let ctx = EvalCtx {
        now_ms: 0,
        meta: &Value::Null,
    };
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for row in rows {
        let outcome = runner.push(0, vec![row.clone()], &ctx, &mut out);
        errors.extend(outcome.errors);
    }
    errors.extend(runner.finish(&ctx, &mut out).errors);
    if let Some(e) = errors.first() {
        return Err(e.message().to_owned());
    }
    match &out[..] {
        [Message::Rows(rs)] if rs.len() == 1 => {
            Ok(rs[0].get("r").map_or(Json::Null, Value::to_json))
        }
        other => Err(format!("the window sent {other:?}")),
    }
}

fn input_rows(case: &Json) -> Vec<Row> {
    let Some(rows) = case["rows"].as_array() else {
        return Vec::new();
    };
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            let Json::Object(map) = r else {
                panic!("{}: a row must be an object, got {r}", case["test"]);
            };
            let ts = map.get("ts").and_then(Json::as_i64).unwrap_or(i as i64);
            Row::from_pairs(
                map.iter()
                    .map(|(k, v)| (Arc::from(k.as_str()), Value::from_json(v.clone())))
                    .collect(),
                ts,
            )
        })
        .collect()
}

/// Equal, with types: a whole number is not a float.
fn same(got: &Json, want: &Json) -> bool {
    got == want
}
