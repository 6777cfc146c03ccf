//! eKuiper's own function test tables, ported as data and run through Oort's real path.
//!
//! Every `tests/ekuiper_functions/*.json` file holds the cases of one Go test file of eKuiper's
//! `internal/binder/function/` package. Each case is compiled and evaluated the way `oort
//! run-rule` does it: `SELECT f(a0, a1, ...) AS r FROM s` over a schemaless stream, through
//! [`oort_sql::compile`] and a [`QueryRunner`], on one row holding the arguments as columns
//! `a0`, `a1`, ... The test fails listing every case that gave something else, with its file,
//! Go test and call, and prints how many cases passed.
//!
//! # The format
//!
//! ```json
//! {
//!   "go_file": "internal/binder/function/funcs_math_test.go",
//!   "notes": ["free text: what was ported, how"],
//!   "skipped": [{"go": "TestGetValidPrefix", "why": "tests an internal helper, not a function"}],
//!   "cases": [
//!     {"go": "TestFuncMath", "case": "0", "call": "abs", "args": [-10], "result": 10},
//!     {"go": "TestFuncMath", "case": "0", "call": "ln", "args": [-10],
//!      "error": "The argument must be a strictly positive number but got -10"},
//!     {"go": "TestExec", "call": "changed_cols",
//!      "steps": [{"args": [...], "row": {...}, "columns": {...}}, ...]}
//!   ]
//! }
//! ```
//!
//! A case's fields:
//!
//! - `go` (required): the Go test function the case comes from; `case` (optional): the row or
//!   subtest within it (an index or the subtest's name).
//! - `call` (required): the function's name.
//! - `args`: the arguments, in order. A JSON value is put in the row as column `a<i>` and the
//!   call reads that column; `{"$sql": "text"}` is written into the call as SQL text instead (a
//!   literal such as `'bigint'` for eKuiper's validation tests, which check literals when the
//!   rule is created, or a column name given in `row`).
//! - `row` (optional): more columns of the input row, an object.
//! - exactly one expectation:
//!   - `result`: the value of the call (the column `r` of the output row);
//!   - `error`: the call fails, when the rule is compiled or on the row, with an error whose text
//!     contains this (eKuiper's text, or a part of it); `error_at` (optional, `"compile"` or
//!     `"run"`) also pins when;
//!   - `columns`: the whole output row as an object (for functions whose result spreads into
//!     columns, such as `changed_cols`; the call is then not aliased).
//! - `spreads` (optional, `true`): the function spreads into columns, so the call is never
//!   aliased, even where the case expects an error.
//! - `steps` (instead of `args`, `row` and the expectation): a list of objects each holding
//!   `args`, `row` and one expectation, evaluated in order through one rule, for functions with
//!   state (each step is the next row).
//! - `differs` (optional): why Oort keeps a result other than eKuiper's. The expectation is then
//!   Oort's documented result, checked like any other so it cannot rot; `ekuiper` (optional)
//!   holds eKuiper's.
//!
//! Values (arguments and expected results) are JSON, typed as eKuiper's Go tests type them:
//!
//! - a Go `int`/`int64` is a JSON integer (`10`), a Go `float64` a JSON number with a fraction
//!   or an exponent (`10.0`, `1e3`); the two never compare equal, so an expected `10` is not met
//!   by a float `10.0`;
//! - `nil` is `null`; Go slices are arrays, Go maps objects;
//! - `{"$float": "NaN" | "Inf" | "-Inf"}`: the floats JSON cannot hold;
//! - `{"$approx": x}`: (results only) a float within 1e-12 relative of `x`, for values of Go's
//!   `math` package whose last bit Go and Rust's libm may round differently;
//! - `{"$bytes": "text"}` or `{"$bytes": [120, 156, ...]}`: a Go `[]byte` (Oort's `bytea`), as
//!   the text's UTF-8 or as the byte values;
//! - `{"$time": "2022-04-13T06:22:32.233Z"}`: a Go `time.Time`. Oort has no datetime type: a
//!   datetime is RFC 3339 text (what `cast(x, "datetime")` and `convert_tz` give) or epoch
//!   milliseconds, so an argument is that text, and an expected result is the exact text Oort
//!   gives.
//!
//! `OORT_FUNCS_FILTER=<text>` runs only the cases whose file, Go test or call contains it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oort_sql::stream::{StreamDef, parse_streams};
use oort_sql::{Catalog, EvalCtx, QueryRunner, compile};
use oort_value::{Message, Row, Value};
use serde_json::Value as Json;

struct Streams(Vec<StreamDef>);

impl Catalog for Streams {
    fn stream(&self, name: &str) -> Option<&StreamDef> {
        self.0.iter().find(|d| &*d.name == name)
    }
}

/// What a step expects.
#[derive(Debug)]
enum Expect {
    Result(Json),
    Error { text: String, at: Option<String> },
    Columns(Json),
}

/// One evaluation: the arguments, the extra columns and what it must give.
#[derive(Debug)]
struct Step {
    args: Vec<Json>,
    row: serde_json::Map<String, Json>,
    expect: Expect,
}

/// One case of a file.
#[derive(Debug)]
struct Case {
    go: String,
    label: Option<String>,
    call: String,
    steps: Vec<Step>,
    differs: bool,
    /// The call spreads into columns: it is never aliased.
    spreads: bool,
}

impl Case {
    fn name(&self, file: &str) -> String {
        let label = self
            .label
            .as_ref()
            .map(|l| format!(" [{l}]"))
            .unwrap_or_default();
        format!("{file}: {}{label}: {}", self.go, self.call)
    }
}

fn field<'a>(obj: &'a serde_json::Map<String, Json>, key: &str) -> Option<&'a Json> {
    obj.get(key)
}

fn parse_step(obj: &serde_json::Map<String, Json>) -> Result<Step, String> {
    let args = match field(obj, "args") {
        None => Vec::new(),
        Some(Json::Array(a)) => a.clone(),
        Some(other) => return Err(format!("`args` must be an array, got {other}")),
    };
    let row = match field(obj, "row") {
        None => serde_json::Map::new(),
        Some(Json::Object(m)) => m.clone(),
        Some(other) => return Err(format!("`row` must be an object, got {other}")),
    };
    let mut expects = Vec::new();
    if let Some(v) = field(obj, "result") {
        expects.push(Expect::Result(v.clone()));
    }
    if let Some(v) = field(obj, "error") {
        let text = v
            .as_str()
            .ok_or_else(|| format!("`error` must be a string, got {v}"))?
            .to_string();
        let at = match field(obj, "error_at") {
            None => None,
            Some(Json::String(s)) if s == "compile" || s == "run" => Some(s.clone()),
            Some(other) => {
                return Err(format!(
                    "`error_at` must be \"compile\" or \"run\", got {other}"
                ));
            }
        };
        expects.push(Expect::Error { text, at });
    }
    if let Some(v) = field(obj, "columns") {
        if !v.is_object() {
            return Err(format!("`columns` must be an object, got {v}"));
        }
        expects.push(Expect::Columns(v.clone()));
    }
    if expects.len() != 1 {
        return Err("a step needs exactly one of `result`, `error`, `columns`".into());
    }
    Ok(Step {
        args,
        row,
        expect: expects.remove(0),
    })
}

const CASE_KEYS: &[&str] = &[
    "go", "case", "call", "args", "row", "result", "error", "error_at", "columns", "steps",
    "differs", "ekuiper", "note", "spreads",
];
const STEP_KEYS: &[&str] = &[
    "args", "row", "result", "error", "error_at", "columns", "ekuiper", "note",
];

fn parse_case(json: &Json) -> Result<Case, String> {
    let obj = json.as_object().ok_or("a case must be an object")?;
    for key in obj.keys() {
        if !CASE_KEYS.contains(&key.as_str()) {
            return Err(format!("unknown field `{key}`"));
        }
    }
    let text = |key: &str| -> Result<String, String> {
        obj.get(key)
            .and_then(Json::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("field `{key}` (a string) is missing"))
    };
    let go = text("go")?;
    let call = text("call")?;
    let label = match obj.get("case") {
        None => None,
        Some(Json::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    let steps = match obj.get("steps") {
        Some(Json::Array(steps)) => {
            for key in ["args", "row", "result", "error", "columns"] {
                if obj.contains_key(key) {
                    return Err(format!(
                        "`{key}` belongs in each step when `steps` is given"
                    ));
                }
            }
            steps
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let o = s
                        .as_object()
                        .ok_or_else(|| format!("step {i} must be an object"))?;
                    if let Some(k) = o.keys().find(|k| !STEP_KEYS.contains(&k.as_str())) {
                        return Err(format!("step {i}: unknown field `{k}`"));
                    }
                    parse_step(o).map_err(|e| format!("step {i}: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?
        }
        Some(_) => return Err("`steps` must be an array".into()),
        None => vec![parse_step(obj)?],
    };
    if steps.is_empty() {
        return Err("`steps` is empty".into());
    }
    let differs = match obj.get("differs") {
        None => false,
        Some(Json::String(s)) if !s.trim().is_empty() => true,
        Some(_) => return Err("`differs` must say why, as a non-empty string".into()),
    };
    let spreads = match obj.get("spreads") {
        None => false,
        Some(Json::Bool(b)) => *b,
        Some(other) => return Err(format!("`spreads` must be a boolean, got {other}")),
    };
    Ok(Case {
        go,
        label,
        call,
        steps,
        differs,
        spreads,
    })
}

/// A JSON value of the format as an Oort value (tags `$float`, `$bytes`, `$time` resolved).
fn to_value(json: &Json) -> Result<Value, String> {
    match json {
        Json::Object(map) if map.len() == 1 && map.keys().all(|k| k.starts_with('$')) => {
            let (tag, v) = map.iter().next().expect("one entry");
            match (tag.as_str(), v) {
                ("$float", Json::String(s)) => match s.as_str() {
                    "NaN" => Ok(Value::Float(f64::NAN)),
                    "Inf" | "+Inf" => Ok(Value::Float(f64::INFINITY)),
                    "-Inf" => Ok(Value::Float(f64::NEG_INFINITY)),
                    other => Err(format!("unknown $float {other:?}")),
                },
                ("$bytes", Json::String(s)) => Ok(Value::Bytes(Arc::from(s.as_bytes()))),
                ("$bytes", Json::Array(items)) => items
                    .iter()
                    .map(|b| {
                        b.as_u64()
                            .and_then(|b| u8::try_from(b).ok())
                            .ok_or_else(|| format!("$bytes: {b} is not a byte"))
                    })
                    .collect::<Result<Vec<u8>, _>>()
                    .map(|b| Value::Bytes(Arc::from(b))),
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

/// Whether `got` is the value `want` describes, with types compared strictly (a `bigint` is
/// not a `float`).
fn matches(want: &Json, got: &Value) -> Result<bool, String> {
    if let Json::Object(map) = want
        && map.len() == 1
        && let Some(x) = map.get("$approx")
    {
        let x = x.as_f64().ok_or("$approx needs a number")?;
        return Ok(match got {
            Value::Float(g) => (g - x).abs() <= 1e-12 * x.abs().max(1.0),
            _ => false,
        });
    }
    let want = to_value(want)?;
    Ok(same(&want, got))
}

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

/// How a value shows in a failure: its type and its text.
fn show(v: &Value) -> String {
    match v {
        Value::Bytes(b) => format!("bytea({b:?})"),
        Value::Float(f) => format!("float({f:?})"),
        other => format!("{}({})", other.type_name(), other.to_json()),
    }
}

const DDL: &str = r#"CREATE STREAM s () WITH (TYPE="memory", DATASOURCE="functions");"#;

/// Runs one case; `Err` says what went wrong.
fn run_case(case: &Case, streams: &Streams) -> Result<(), String> {
    let mut runner: Option<(QueryRunner, String)> = None;
    for (n, step) in case.steps.iter().enumerate() {
        let at = if case.steps.len() > 1 {
            format!("step {n}: ")
        } else {
            String::new()
        };
        let mut call_args = Vec::new();
        let mut pairs: Vec<(Arc<str>, Value)> = Vec::new();
        for (i, a) in step.args.iter().enumerate() {
            match a {
                Json::Object(m) if m.len() == 1 && m.contains_key("$sql") => {
                    let sql = m["$sql"].as_str().ok_or("$sql needs a string")?;
                    call_args.push(sql.to_string());
                }
                other => {
                    call_args.push(format!("a{i}"));
                    pairs.push((Arc::from(format!("a{i}")), to_value(other)?));
                }
            }
        }
        for (k, v) in &step.row {
            pairs.push((Arc::from(k.as_str()), to_value(v)?));
        }
        let call = format!("{}({})", case.call, call_args.join(", "));
        let sql = if case.spreads || matches!(step.expect, Expect::Columns(_)) {
            format!("SELECT {call} FROM s")
        } else {
            format!("SELECT {call} AS r FROM s")
        };
        // Stateful cases keep one rule across steps; each step's SQL must then be the same.
        let fresh = !matches!(&runner, Some((_, s)) if *s == sql);
        if fresh {
            if n > 0 {
                return Err(format!(
                    "{at}the steps of one case must make the same call, got {sql}"
                ));
            }
            match compile(&sql, streams) {
                Ok(query) => {
                    runner = Some((
                        QueryRunner::new(query, false, 0, HashMap::new()),
                        sql.clone(),
                    ))
                }
                Err(e) => {
                    let text = e.to_string();
                    let expected = matches!(&step.expect, Expect::Error { text: want, at: when }
                        if text.contains(want.as_str()) && when.as_deref() != Some("run"));
                    if !expected {
                        return Err(format!("{at}{sql}: compile error: {text}"));
                    }
                    if n + 1 != case.steps.len() {
                        return Err(format!(
                            "{at}{sql}: a compile error ends the case before its last step"
                        ));
                    }
                    return Ok(());
                }
            }
        }
        let (runner, sql) = runner.as_mut().expect("compiled");
        let ctx = EvalCtx {
            now_ms: 0,
            meta: &Value::Null,
        };
        let mut out = Vec::new();
        let outcome = runner.push(0, vec![Row::from_pairs(pairs, 0)], &ctx, &mut out);
        let got_row = match out.as_slice() {
            [Message::Row(row)] => Some(row.clone()),
            [] => None,
            other => return Err(format!("{at}{sql}: expected one row, got {other:?}")),
        };
        let error = outcome.errors.first();
        match (&step.expect, got_row, error) {
            (Expect::Error { text, at: when }, None, Some(e)) => {
                if when.as_deref() == Some("compile") {
                    return Err(format!(
                        "{at}{sql}: expected a compile error, it failed on the row: {}",
                        e.message()
                    ));
                }
                if !e.message().contains(text.as_str()) && !e.sent().contains(text.as_str()) {
                    return Err(format!(
                        "{at}{sql}: error {:?}, expected one containing {text:?}",
                        e.message()
                    ));
                }
            }
            (Expect::Error { text, .. }, Some(row), None) => {
                return Err(format!(
                    "{at}{sql}: expected an error containing {text:?}, got {}",
                    row.get("r").map_or_else(|| format!("{row:?}"), show)
                ));
            }
            (Expect::Result(want), Some(row), None) => {
                let got = row.get("r").cloned().unwrap_or(Value::Null);
                if !matches(want, &got)? {
                    return Err(format!("{at}{sql}: got {}, expected {want}", show(&got)));
                }
            }
            (Expect::Columns(want), Some(row), None) => {
                let got = row.to_object();
                if !matches(want, &got)? {
                    return Err(format!("{at}{sql}: got {}, expected {want}", show(&got)));
                }
            }
            (_, _, Some(e)) => {
                return Err(format!("{at}{sql}: failed: {}", e.message()));
            }
            (_, None, None) => return Err(format!("{at}{sql}: no output row")),
        }
    }
    Ok(())
}

fn case_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ekuiper_functions");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

#[test]
fn ekuiper_function_tables() {
    let streams = Streams(parse_streams(DDL, "streams.sql", Path::new(".")).expect("ddl"));
    let filter = std::env::var("OORT_FUNCS_FILTER").unwrap_or_default();
    let (mut passed, mut differs) = (0usize, 0usize);
    let mut failures = Vec::new();
    let mut summary = String::new();
    let files = case_files();
    assert!(!files.is_empty(), "no case files");
    for path in files {
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&path).expect("read case file");
        let doc: Json =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: not JSON: {e}"));
        let go_file = doc
            .get("go_file")
            .and_then(Json::as_str)
            .unwrap_or_else(|| panic!("{file}: `go_file` (the Go test file ported) is missing"));
        let cases = doc
            .get("cases")
            .and_then(Json::as_array)
            .unwrap_or_else(|| panic!("{file}: `cases` (an array) is missing"));
        let mut file_passed = 0;
        let mut file_run = 0;
        for (i, json) in cases.iter().enumerate() {
            let case = parse_case(json).unwrap_or_else(|e| panic!("{file}: case {i}: {e}"));
            if !filter.is_empty()
                && ![file.as_str(), case.go.as_str(), case.call.as_str()]
                    .iter()
                    .any(|s| s.contains(&filter))
            {
                continue;
            }
            file_run += 1;
            match run_case(&case, &streams) {
                Ok(()) => {
                    file_passed += 1;
                    if case.differs {
                        differs += 1;
                    }
                }
                Err(e) => failures.push(format!("{} (case {i}): {e}", case.name(&file))),
            }
        }
        passed += file_passed;
        let _ = writeln!(
            summary,
            "  {file} ({go_file}): {file_passed} of {file_run} cases pass"
        );
    }
    println!(
        "eKuiper function tables: {passed} cases pass ({differs} of them documented differences)\n{summary}"
    );
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
