//! eKuiper's operator tests (`internal/topo/operator/*_test.go`), ported as data and run
//! against Oort's statement stages.
//!
//! Each `tests/ekuiper_operators/<name>.json` holds the cases of eKuiper's `<name>_test.go`,
//! generated from the Go file by `go2json.py` beside it (`python3 go2json.py <eKuiper
//! checkout> project filter`): one case per row of a Go test table, named by its test function
//! (`go`) and its index in the table (`case`). A case is eKuiper's statement (`sql`), the input
//! eKuiper's test hands the operator, and the operator's expected output: for the project
//! operator `result`, a list of rows; for the filter operator `kept`, the input's rows or tuples
//! that pass (written as the input writes them); for the join operator (`join_test.go`,
//! `join_multi_test.go`) `joined`, the joined tuples, each the input's rows it joins in the
//! order of the statement's sources; or `error`, the text of the error it returns. The function
//! files (`str_func_test.go`, `math_func_test.go`, `misc_func_test.go`, `cols_func_test.go`)
//! test the project operator: `result`; `results`, the rows of each input of a sequence; or
//! `refused`, a statement eKuiper's parser refuses (its test checks no text).
//! `analyticfuncs_operator_test.go` builds its calls by hand: its cases are the statements they
//! stand for (`translated` says so); so does `windowfunc_operator_test.go`, whose cases are
//! translated by hand (`windowfunc_operator.json`, which the script leaves alone).
//!
//! # The level
//!
//! eKuiper's project operator receives what the operators before it made of the rule's rows:
//! one row, a window's rows (`WindowTuples`), the joined tuples of a window (`JoinTuples`), or
//! a window's groups (`GroupedTuplesSet`). Its tests build that input by hand, often with rows
//! that the statement's `WHERE`, `ON` or `GROUP BY` would not have let through in that shape
//! (the projection alone is under test). So the cases run the same stage of Oort: the whole
//! statement is compiled with [`oort_sql::compile`] (a statement Oort refuses fails its case),
//! then [`QueryRunner::project`] applies its projection, with the aggregates it reads, to the
//! given rows, tuples or groups; for `filter_test.go`, [`QueryRunner::filter`] its `WHERE`
//! to the given row or tuples; likewise [`QueryRunner::having`], [`QueryRunner::order`] and
//! [`QueryRunner::group`] for `having_test.go`, `order_test.go` and `aggregate_test.go`, and
//! [`QueryRunner::join`] for the join files. The other stages do not run here; the rule cases
//! (`tests/rules/ek_*`) run whole statements. A sequence (below) is the exception: its rows go
//! one by one through [`QueryRunner::push`], as a rule without a window runs them, since the
//! state of `changed_cols`, `lag` or `had_changed` lives in the runner (these statements read
//! one stream and have no other clause, so the projection is all that runs).
//!
//! The input's shapes:
//!
//! - `{"row": T}`: one row. `T` is `{"emitter": stream, "row": {fields}, "meta": {...}?}`.
//! - `{"window": [[T, ...], ...]}`: a window's rows, each a tuple of one row per joined
//!   stream (one `T` without a join).
//! - `{"groups": [[[T, ...], ...], ...]}`: a window's groups of such tuples.
//! - `"range": [start, end]` (optional, with a window): what `window_start()` and
//!   `window_end()` read.
//! - `{"sequence": [T, ...]}`: rows handed to the same operator one after another.
//! - `{"error": text}`: an error handed on by the operator before (eKuiper's project operator
//!   passes it through).
//!
//! A case's `rule` (`{"id", "start"}`) is the rule the Go test's context names: the statement
//! is compiled for it, as a rule's is, so `rule_id()` and `rule_start()` give them.
//!
//! A tuple's rows go to the statement's sources by the emitter's name (the stream or its
//! alias); a row whose emitter the statement does not name takes the first source no other row
//! of the tuple took (eKuiper's tests sometimes name an emitter the statement does not read).
//!
//! # How results compare
//!
//! Values compare with their types, as eKuiper's tests compare Go values with
//! `reflect.DeepEqual`: a Go whole number (`int`, `int64`) is a JSON integer and meets Oort's
//! `bigint`, a Go `float64` is a JSON number with a fraction or exponent (`122.0`) and meets
//! Oort's `float`. (eKuiper's JSON sink would print both `122`; this is stricter than the
//! text its sink sends.) Times are `{"$time": "<RFC 3339>"}` (Oort has no datetime type: a
//! datetime is that text). A row compares as its JSON sink would send it: fields whose value is
//! `null` are left out unless the Go test sets `SendNil` (`"send_nil": true`, the rule option
//! `sendNilField`). Rows compare in order, fields in any order. An error compares by its whole
//! text as Oort sends it (eKuiper's words).
//!
//! # Differences
//!
//! `<name>.differs.json` (written by hand, never by the script) lists the cases where Oort
//! keeps another answer: `{"go", "case", "why", "oort": {"result": [...]} | {"error": text}}`,
//! `oort` being Oort's answer, checked like eKuiper's so it cannot rot; and under
//! `not_portable` the cases that cannot run against Oort at all, with why. A case that differs
//! from eKuiper without an entry fails the test, and so does an entry whose case now gives
//! eKuiper's answer. The test prints, per file, how many cases it ported, ran, found
//! identical and found different. `OORT_OPS_CASE=<text>` runs the cases whose Go test
//! contains it; a failing case prints Oort's answer in the `oort` form.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use oort_sql::stream::{StreamDef, parse_streams};
use oort_sql::{Catalog, EvalCtx, QueryRunner, RuleInfo, StageInput, compile, compile_rule};
use oort_value::{Message, Row, Value};
use serde_json::{Value as Json, json};

/// The streams eKuiper's operator tests read, all schemaless.
const DDL: &str = r#"
CREATE STREAM test () WITH (TYPE="memory", DATASOURCE="test");
CREATE STREAM test1 () WITH (TYPE="memory", DATASOURCE="test1");
CREATE STREAM tbl () WITH (TYPE="memory", DATASOURCE="tbl");
CREATE STREAM src1 () WITH (TYPE="memory", DATASOURCE="src1");
CREATE STREAM src2 () WITH (TYPE="memory", DATASOURCE="src2");
CREATE STREAM src3 () WITH (TYPE="memory", DATASOURCE="src3");
CREATE STREAM src4 () WITH (TYPE="memory", DATASOURCE="src4");
CREATE STREAM A () WITH (TYPE="memory", DATASOURCE="A");
CREATE STREAM B () WITH (TYPE="memory", DATASOURCE="B");
CREATE STREAM C () WITH (TYPE="memory", DATASOURCE="C");
CREATE STREAM demo () WITH (TYPE="memory", DATASOURCE="demo");
"#;

/// How the answer of a statement Oort refuses begins.
const COMPILE: &str = "compile: ";

/// The Go tests (by name, or its start) that build eKuiper's project operator with
/// `SendMeta: true` (`project_test.go`'s `TestProjectPlan_*`, `math_func_test.go`); the
/// others build it without, as a rule without `sendMetaToSink` runs.
const SEND_META: &[&str] = &["TestProjectPlan_", "TestMathAndConversionFunc_Apply1"];

/// The stage a Go test file tests.
#[derive(Debug, Clone, Copy)]
enum Stage {
    /// The projection ([`QueryRunner::project`]).
    Project,
    /// `WHERE` ([`QueryRunner::filter`]).
    Filter,
    /// `HAVING` ([`QueryRunner::having`]).
    Having,
    /// `ORDER BY` ([`QueryRunner::order`]).
    Order,
    /// `GROUP BY` keys ([`QueryRunner::group`]).
    Group,
    /// The joins ([`QueryRunner::join`]).
    Join,
    /// The window function, `row_number()` ([`QueryRunner::window_function`]).
    WindowFunc,
}

/// The Go test files ported, by the name of their JSON file, and the stage each tests.
const FILES: &[(&str, Stage)] = &[
    ("project", Stage::Project),
    ("filter", Stage::Filter),
    ("having", Stage::Having),
    ("order", Stage::Order),
    ("aggregate", Stage::Group),
    ("str_func", Stage::Project),
    ("math_func", Stage::Project),
    ("misc_func", Stage::Project),
    ("cols_func", Stage::Project),
    ("analyticfuncs_operator", Stage::Project),
    ("agg_func_operator", Stage::Project),
    ("windowfunc_operator", Stage::WindowFunc),
    ("join", Stage::Join),
    ("join_multi", Stage::Join),
];

struct Streams(Vec<StreamDef>);

impl Catalog for Streams {
    fn stream(&self, name: &str) -> Option<&StreamDef> {
        self.0.iter().find(|d| &*d.name == name)
    }
}

/// What a case gave: rows (as JSON objects, typed as the case format writes them) or an error.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Rows(Vec<Value>),
    /// What `WHERE` or `HAVING` let through, or what `ORDER BY` sorted: the input's rows,
    /// tuples or groups, as the case writes them (`{"kept": ...}` or `{"sorted": ...}`).
    Kept(&'static str, Json),
    /// The rows of each input of a sequence, in order (`{"results": [[...], ...]}`).
    Steps(Vec<Vec<Value>>),
    Error(String),
    /// The statement is refused when compiled, whatever the text (`{"refused": true}`).
    Refused,
}

impl Answer {
    /// The answer in the case format (`{"result": [...]}` or `{"error": "..."}`).
    fn to_case_json(&self) -> Json {
        match self {
            Self::Rows(rows) => json!({"result": rows.iter().map(typed_json).collect::<Vec<_>>()}),
            Self::Kept(key, items) => json!({ *key: items }),
            Self::Steps(steps) => json!({"results": steps
                .iter()
                .map(|rows| rows.iter().map(typed_json).collect::<Vec<_>>())
                .collect::<Vec<_>>()}),
            Self::Error(e) => json!({"error": e}),
            Self::Refused => json!({"refused": true}),
        }
    }
}

/// A value as the case format writes it: a float always with a fraction.
fn typed_json(v: &Value) -> Json {
    match v {
        // serde_json writes a whole f64 as `122.0`.
        Value::Float(f) if f.is_finite() => Json::from(*f),
        Value::Float(f) if f.is_nan() => json!({"$float": "NaN"}),
        Value::Float(f) if f.is_infinite() => {
            json!({"$float": if *f > 0.0 { "Inf" } else { "-Inf" }})
        }
        Value::Array(items) => Json::Array(items.iter().map(typed_json).collect()),
        Value::Object(map) => Json::Object(
            map.iter()
                .map(|(k, v)| (k.to_string(), typed_json(v)))
                .collect(),
        ),
        other => other.to_json(),
    }
}

/// A JSON value of the case format as an Oort value.
fn to_value(json: &Json) -> Result<Value, String> {
    match json {
        Json::Object(map) if map.len() == 1 && map.keys().all(|k| k.starts_with('$')) => {
            let (tag, v) = map.iter().next().expect("one entry");
            match (tag.as_str(), v) {
                ("$float", Json::String(s)) => match s.as_str() {
                    "NaN" => Ok(Value::Float(f64::NAN)),
                    "Inf" => Ok(Value::Float(f64::INFINITY)),
                    "-Inf" => Ok(Value::Float(f64::NEG_INFINITY)),
                    other => Err(format!("unknown $float {other:?}")),
                },
                ("$time", Json::String(s)) => Ok(Value::from(s.as_str())),
                (tag, v) => Err(format!("unknown tagged value {tag}: {v}")),
            }
        }
        Json::Array(items) => items
            .iter()
            .map(to_value)
            .collect::<Result<Vec<_>, _>>()
            .map(Value::array),
        Json::Object(map) => map
            .iter()
            .map(|(k, v)| Ok((Arc::from(k.as_str()), to_value(v)?)))
            .collect::<Result<_, String>>()
            .map(Value::object),
        other => Ok(Value::from_json(other.clone())),
    }
}

/// Whether two values are the same, types included (`1` is not `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x == y || (x.is_nan() && y.is_nan()),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|((ka, va), (kb, vb))| ka == kb && same(va, vb))
        }
        (Value::Int(_), Value::Float(_)) | (Value::Float(_), Value::Int(_)) => false,
        _ => a == b,
    }
}

fn same_answer(a: &Answer, b: &Answer) -> bool {
    match (a, b) {
        (Answer::Rows(x), Answer::Rows(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        // Both come from the case's own JSON: numbers keep their form (`6` is not `6.0`).
        // Groups match in any order, as eKuiper's test matches them.
        (Answer::Kept("groups", x), Answer::Kept("groups", y)) => {
            let sorted = |v: &Json| {
                let mut items: Vec<String> = v
                    .as_array()
                    .map(|a| a.iter().map(Json::to_string).collect())
                    .unwrap_or_default();
                items.sort();
                items
            };
            sorted(x) == sorted(y)
        }
        (Answer::Kept(a, x), Answer::Kept(b, y)) => a == b && x == y,
        (Answer::Steps(x), Answer::Steps(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(x, y)| x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)))
        }
        (Answer::Error(x), Answer::Error(y)) => x == y,
        (Answer::Refused, Answer::Refused) => true,
        (Answer::Error(e), Answer::Refused) | (Answer::Refused, Answer::Error(e)) => {
            e.starts_with(COMPILE)
        }
        _ => false,
    }
}

/// The expected answer of a case (`result` or `error`, in `obj`).
fn expected(obj: &Json) -> Result<Answer, String> {
    if obj.get("refused") == Some(&Json::Bool(true)) {
        return Ok(Answer::Refused);
    }
    if let Some(steps) = obj.get("results") {
        let Json::Array(steps) = steps else {
            return Err(format!("`results` must be a list of lists of rows: {obj}"));
        };
        return steps
            .iter()
            .map(|rows| match rows {
                Json::Array(rows) => rows.iter().map(to_value).collect::<Result<Vec<_>, _>>(),
                other => Err(format!(
                    "`results` holds a list of rows per input, not {other}"
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Answer::Steps);
    }
    for key in ["kept", "sorted", "groups", "joined"] {
        if let Some(items) = obj.get(key) {
            return match (items, obj.get("result"), obj.get("error")) {
                (Json::Array(_), None, None) => Ok(Answer::Kept(key, items.clone())),
                _ => Err(format!("`{key}` must be a list, alone: {obj}")),
            };
        }
    }
    match (obj.get("result"), obj.get("error")) {
        (Some(Json::Array(rows)), None) => rows
            .iter()
            .map(to_value)
            .collect::<Result<Vec<_>, _>>()
            .map(Answer::Rows),
        (None, Some(Json::String(e))) => Ok(Answer::Error(e.clone())),
        _ => Err(format!(
            "needs `result` (a list of rows), `kept` (a list of tuples) or `error` (a text): {obj}"
        )),
    }
}

/// One input row of a tuple: its emitter and the row.
fn input_row(t: &Json) -> Result<(String, Row), String> {
    let emitter = t["emitter"].as_str().ok_or("a row without `emitter`")?;
    let Value::Object(fields) = to_value(&t["row"])? else {
        return Err(format!("`row` must be an object: {t}"));
    };
    let mut row = Row::from_pairs(
        fields
            .iter()
            .map(|(k, v)| (Arc::clone(k), v.clone()))
            .collect(),
        0,
    );
    if let Some(meta) = t.get("meta") {
        row.set_meta(Some(Arc::new(to_value(meta)?)));
    }
    Ok((emitter.to_string(), row))
}

/// A tuple's rows placed by source (see the module documentation).
fn tuple(t: &Json, names: &[Vec<String>]) -> Result<Vec<Option<Row>>, String> {
    let items = t.as_array().ok_or("a tuple must be a list of rows")?;
    let mut slots: Vec<Option<Row>> = vec![None; names.len()];
    let mut unnamed = Vec::new();
    for item in items {
        let (emitter, row) = input_row(item)?;
        match names.iter().position(|n| n.contains(&emitter)) {
            Some(i) if slots[i].is_none() => slots[i] = Some(row),
            _ => unnamed.push(row),
        }
    }
    for row in unnamed {
        let free = slots
            .iter()
            .position(Option::is_none)
            .ok_or("a tuple has more rows than the statement has sources")?;
        slots[free] = Some(row);
    }
    Ok(slots)
}

/// Runs one case: Oort's answer, or `Err` when the case itself is malformed.
fn run(case: &Json, stage_of: Stage, streams: &Streams) -> Result<Answer, String> {
    let sql = case["sql"].as_str().ok_or("no `sql`")?;
    let input = &case["input"];
    if let Some(Json::String(e)) = input.get("error") {
        return Err(format!(
            "an upstream error ({e}) is no input of Oort's stages: list the case as not portable"
        ));
    }
    // eKuiper's planner refuses a join of streams without a window (`a time window or count
    // window is required to join multiple streams`), as Oort does; its join tests parse the
    // statement without the planner and hand the operator a window's rows. Such a statement
    // runs here with a window added, which no stage run here reads.
    let windowed;
    let sql = if is_join(sql) && !sql.to_ascii_lowercase().contains("window(") {
        windowed = format!("{} GROUP BY TUMBLINGWINDOW(ss, 10)", sql.trim_end());
        windowed.as_str()
    } else {
        sql
    };
    let compiled = match case.get("rule") {
        Some(rule) => compile_rule(
            sql,
            streams,
            &RuleInfo {
                id: Arc::from(rule["id"].as_str().ok_or("`rule` needs an `id`")?),
                start_ms: rule["start"].as_i64().ok_or("`rule` needs a `start`")?,
            },
        ),
        None => compile(sql, streams),
    };
    let query = match compiled {
        Ok(q) => q,
        Err(e) => return Ok(Answer::Error(format!("{COMPILE}{e}"))),
    };
    let names: Vec<Vec<String>> = query
        .sources
        .iter()
        .map(|s| {
            let mut n = vec![s.stream.to_string()];
            n.extend(s.alias.as_ref().map(|a| a.to_string()));
            n
        })
        .collect();
    let window = match input.get("range") {
        None => None,
        Some(r) => Some((
            r[0].as_i64().ok_or("bad `range`")?,
            r[1].as_i64().ok_or("bad `range`")?,
        )),
    };
    let send_nil = case.get("send_nil") == Some(&Json::Bool(true));
    let ctx = EvalCtx {
        now_ms: 0,
        meta: &Value::Null,
    };
    if let Some(Json::Array(rows)) = input.get("sequence") {
        // One row after another through one runner, as a rule without a window runs them:
        // the state of `changed_cols`, `lag` and the like carries from row to row.
        let mut runner = QueryRunner::new(query, false, 0, HashMap::new());
        let mut steps = Vec::new();
        for row in rows {
            let mut out = Vec::new();
            let outcome = runner.push(0, vec![input_row(row)?.1], &ctx, &mut out);
            if let Some(e) = outcome.errors.first() {
                return Ok(Answer::Error(e.sent().to_string()));
            }
            let mut sent = Vec::new();
            for message in out {
                match message {
                    Message::Row(row) => sent.push(sent_row(&row, send_nil)),
                    Message::Rows(rows) => sent.extend(rows.iter().map(|r| sent_row(r, send_nil))),
                    Message::Error { message, .. } => {
                        return Ok(Answer::Error(message.to_string()));
                    }
                }
            }
            steps.push(sent);
        }
        return Ok(Answer::Steps(steps));
    }
    if let Stage::Join = stage_of {
        // The window's rows, each a tuple of one row, go to their sources by emitter.
        let Some(Json::Array(items)) = input.get("window") else {
            return Err(format!("a join takes a window's rows: {input}"));
        };
        let mut rows = Vec::with_capacity(items.len());
        let mut placed = Vec::with_capacity(items.len());
        for item in items {
            let [t] = item.as_array().map(Vec::as_slice).unwrap_or_default() else {
                return Err(format!("a join's input rows are tuples of one row: {item}"));
            };
            let (emitter, row) = input_row(t)?;
            let source = names
                .iter()
                .position(|n| n.contains(&emitter))
                .ok_or_else(|| format!("emitter {emitter} is no source of the statement"))?;
            rows.push((source, row));
            placed.push(t.clone());
        }
        let runner = QueryRunner::new(query, false, 0, HashMap::new());
        return Ok(match runner.join(rows, window, &ctx) {
            Ok(tuples) => Answer::Kept(
                "joined",
                tuples
                    .into_iter()
                    .map(|t| Json::Array(t.into_iter().map(|i| placed[i].clone()).collect()))
                    .collect(),
            ),
            Err(e) => Answer::Error(e.sent().to_string()),
        });
    }
    let stage = if let Some(row) = input.get("row") {
        StageInput::Row(input_row(row)?.1)
    } else if let Some(Json::Array(rows)) = input.get("window") {
        StageInput::Window(
            rows.iter()
                .map(|t| tuple(t, &names))
                .collect::<Result<_, _>>()?,
        )
    } else if let Some(Json::Array(groups)) = input.get("groups") {
        StageInput::Groups(
            groups
                .iter()
                .map(|g| {
                    g.as_array()
                        .ok_or("a group must be a list of tuples")?
                        .iter()
                        .map(|t| tuple(t, &names))
                        .collect::<Result<Vec<_>, _>>()
                })
                .collect::<Result<_, _>>()?,
        )
    } else {
        return Err(format!("unknown input {input}"));
    };
    // The Go tests whose operator is built with `SendMeta: true`: a rule's `sendMetaToSink`,
    // which Oort takes for a statement without a window, GROUP BY or join.
    let go = case["go"].as_str().unwrap_or("");
    let send_meta = SEND_META.iter().any(|t| go.starts_with(t))
        && matches!(stage_of, Stage::Project)
        && query.can_send_meta_to_sink();
    let mut runner = QueryRunner::new(query, false, 0, HashMap::new());
    runner.set_send_meta(send_meta);
    if let Stage::WindowFunc = stage_of {
        return Ok(match runner.window_function(stage, window, &ctx) {
            Ok(rows) => Answer::Rows(rows.iter().map(|r| sent_row(r, send_nil)).collect()),
            Err(e) => Answer::Error(e.sent().to_string()),
        });
    }
    if !matches!(stage_of, Stage::Project) {
        // The items the stage keeps or orders: the row, the window's rows or tuples, or its
        // groups, written as the case writes its input.
        let items: Vec<Json> = match (input.get("row"), input.get("window"), input.get("groups")) {
            (Some(row), _, _) => vec![json!([row])],
            (None, Some(Json::Array(w)), _) => w.clone(),
            (None, None, Some(Json::Array(g))) => g.clone(),
            _ => return Err(format!("no row, window or groups: {input}")),
        };
        let windowed = input.get("window").is_some();
        if let Stage::Group = stage_of {
            return Ok(match runner.group(stage, window, &ctx) {
                Ok(groups) => Answer::Kept(
                    "groups",
                    groups
                        .into_iter()
                        .map(|g| Json::Array(g.into_iter().map(|i| items[i].clone()).collect()))
                        .collect(),
                ),
                Err(e) => Answer::Error(e.sent().to_string()),
            });
        }
        let picked = match stage_of {
            Stage::Filter => runner.filter(stage, window, &ctx),
            Stage::Having => runner.having(stage, window, &ctx),
            _ => runner.order(stage, window, &ctx),
        };
        return Ok(match picked {
            // HAVING keeps or drops a window's rows whole: they are its one group.
            Ok(kept) if windowed && matches!(stage_of, Stage::Having) => Answer::Kept(
                "kept",
                Json::Array(if kept.is_empty() { Vec::new() } else { items }),
            ),
            Ok(picked) => Answer::Kept(
                if matches!(stage_of, Stage::Order) {
                    "sorted"
                } else {
                    "kept"
                },
                Json::Array(picked.into_iter().map(|i| items[i].clone()).collect()),
            ),
            Err(e) => Answer::Error(e.sent().to_string()),
        });
    }
    Ok(match runner.project(stage, window, &ctx) {
        Ok(rows) => Answer::Rows(rows.iter().map(|r| sent_row(r, send_nil)).collect()),
        Err(e) => Answer::Error(e.sent().to_string()),
    })
}

/// A result row as its JSON sink sends it: without its `null` fields unless `send_nil`.
fn sent_row(row: &Row, send_nil: bool) -> Value {
    let Value::Object(map) = row.to_object() else {
        unreachable!("a row is an object")
    };
    let mut map = (*map).clone();
    if !send_nil {
        map.retain(|_, v| !matches!(v, Value::Null));
    }
    Value::object(map)
}

/// Whether a statement joins sources (`JOIN` as a word, outside quotes: these statements quote
/// no such word).
fn is_join(sql: &str) -> bool {
    sql.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .any(|w| w.eq_ignore_ascii_case("join"))
}

/// `go` and `case` of a case or an entry, as one key.
fn key(obj: &Json) -> String {
    format!("{} #{}", obj["go"].as_str().unwrap_or("?"), obj["case"])
}

#[derive(Default)]
struct Count {
    ported: usize,
    ran: usize,
    identical: usize,
    differ: usize,
    not_portable: usize,
}

#[test]
fn ekuiper_operator_tests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ekuiper_operators");
    let streams = Streams(parse_streams(DDL, "streams.sql", Path::new(".")).expect("the DDL"));
    let only = std::env::var("OORT_OPS_CASE").ok();
    let mut failures = Vec::new();
    let mut summary = String::new();
    let mut total = Count::default();
    // Every case file runs: a file the list does not name would be left out silently.
    for entry in std::fs::read_dir(&dir).expect("the case folder") {
        let file = entry.expect("a folder entry").file_name();
        let file = file.to_string_lossy();
        if let Some(name) = file.strip_suffix(".json")
            && !name.ends_with(".differs")
        {
            assert!(
                FILES.iter().any(|(n, _)| *n == name),
                "{file} is not in FILES: say which stage its cases run against"
            );
        }
    }
    for &(name, stage) in FILES {
        let read = |file: &str| -> Json {
            let path = dir.join(file);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
        };
        let doc = read(&format!("{name}.json"));
        let kept = read(&format!("{name}.differs.json"));
        let cases = doc["cases"].as_array().expect("`cases`");
        let mut differs: HashMap<String, &Json> = HashMap::new();
        for entry in kept["differs"].as_array().expect("`differs`") {
            let why = entry["why"].as_str().unwrap_or("");
            assert!(!why.trim().is_empty(), "{name}: {}: no `why`", key(entry));
            assert!(
                differs.insert(key(entry), entry).is_none(),
                "{name}: {} listed twice",
                key(entry)
            );
        }
        let mut not_portable: HashMap<String, &Json> = HashMap::new();
        for entry in kept["not_portable"].as_array().expect("`not_portable`") {
            let why = entry["why"].as_str().unwrap_or("");
            assert!(!why.trim().is_empty(), "{name}: {}: no `why`", key(entry));
            not_portable.insert(key(entry), entry);
        }
        let mut listed: Vec<String> = differs.keys().chain(not_portable.keys()).cloned().collect();
        let mut count = Count::default();
        for case in cases {
            let k = key(case);
            listed.retain(|l| *l != k);
            if only
                .as_deref()
                .is_some_and(|o| !case["go"].as_str().unwrap_or("").contains(o))
            {
                continue;
            }
            count.ported += 1;
            if not_portable.contains_key(&k) {
                count.not_portable += 1;
                continue;
            }
            count.ran += 1;
            let sql = case["sql"].as_str().unwrap_or("");
            let want = match expected(case) {
                Ok(w) => w,
                Err(e) => {
                    failures.push(format!("{name}: {k}: {e}"));
                    continue;
                }
            };
            let got = match run(case, stage, &streams) {
                Ok(got) => got,
                Err(e) => {
                    failures.push(format!("{name}: {k}: {sql}: {e}"));
                    continue;
                }
            };
            let show = got.to_case_json();
            match (same_answer(&got, &want), differs.get(&k)) {
                (true, None) => count.identical += 1,
                (true, Some(_)) => failures.push(format!(
                    "{name}: {k}: {sql}: gives eKuiper's answer now: remove its entry from {name}.differs.json"
                )),
                (false, Some(entry)) => match expected(&entry["oort"]) {
                    Ok(kept) if same_answer(&got, &kept) => count.differ += 1,
                    Ok(_) => failures.push(format!(
                        "{name}: {k}: {sql}: the kept difference changed: now {show}"
                    )),
                    Err(e) => failures.push(format!("{name}: {k}: `oort`: {e}")),
                },
                (false, None) => failures.push(format!(
                    "{name}: {k}: {sql}: eKuiper: {}, Oort: {show}",
                    want.to_case_json()
                )),
            }
        }
        if only.is_none() {
            // A Go file none of whose tests could be ported says why for each.
            assert!(
                count.ran > 0 || doc["not_ported"].as_array().is_some_and(|n| !n.is_empty()),
                "{name}: no case ran, and no test is listed as not ported"
            );
            for l in &listed {
                failures.push(format!(
                    "{name}: {l}: listed in {name}.differs.json, but there is no such case"
                ));
            }
        }
        let _ = writeln!(
            summary,
            "  {name}_test.go: {} ported, {} not portable, {} ran: {} identical, {} differ (documented)",
            count.ported, count.not_portable, count.ran, count.identical, count.differ
        );
        total.ported += count.ported;
        total.ran += count.ran;
        total.identical += count.identical;
        total.differ += count.differ;
        total.not_portable += count.not_portable;
    }
    println!(
        "eKuiper operator tests: {} ported, {} ran, {} identical, {} differ (documented), {} not portable\n{summary}",
        total.ported, total.ran, total.identical, total.differ, total.not_portable
    );
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
