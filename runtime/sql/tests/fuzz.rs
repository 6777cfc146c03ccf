//! A time-budgeted fuzzer for the stream DDL parser, the SQL compiler and the evaluator: no
//! input reachable from a rule file may panic or hang.
//!
//! Inputs are mutations of seed statements (every rule case's SQL and DDL and hand-picked edge
//! cases) by the shared mutation fuzzer (`oort-fuzz`): tokens from a dictionary of SQL syntax
//! and extreme numbers inserted, ranges deleted, duplicated or spliced from another seed; and
//! statements calling every scalar function with arguments of every kind (and one too many or
//! too few), some of them mutated too. A
//! statement that compiles is then run, in event time and in processing time, over generated
//! rows (nulls, extreme numbers, nested objects, arrays, strings). A failure prints the seed that
//! replays it (`OORT_FUZZ_SEED`).
//!
//! The test run gives it a short budget; `cargo xtask fuzz-parsers --only sql --seconds N` a
//! long one (`OORT_FUZZ_SECONDS`). It prints executions per second and the distinct outcomes
//! reached.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use oort_fuzz::{Fuzz, Rng, mutate, value};
use oort_sql::stream::{StreamDef, parse_streams};
use oort_sql::{Catalog, EvalCtx, QueryRunner, compile};
use oort_value::{Row, Value};

const DDL: &str = r#"CREATE STREAM demo (color STRING, size BIGINT, ts BIGINT, temp FLOAT, d STRUCT(a BIGINT, b STRING), arr ARRAY(BIGINT)) WITH (TYPE="memory", DATASOURCE="t", TIMESTAMP="ts");
CREATE STREAM s () WITH (TYPE="memory", DATASOURCE="u", TIMESTAMP="ts");
CREATE TABLE t (color STRING, id BIGINT) WITH (TYPE="file", DATASOURCE="t.json");"#;

const SEEDS: &[&str] = &[
    "SELECT * FROM demo",
    "SELECT color, size * 2 AS s2, s2 + 1 AS s3 FROM demo WHERE size > 2 AND color LIKE 'r%'",
    "SELECT count(*) AS c, window_start(), window_end(), event_time() FROM demo GROUP BY TUMBLINGWINDOW(ss, 10) HAVING c > 1",
    "SELECT color, avg(size) AS a FROM demo GROUP BY color, HOPPINGWINDOW(ms, 20, 10) ORDER BY a DESC LIMIT 2",
    "SELECT collect(*) FROM demo GROUP BY SLIDINGWINDOW(ss, 1, 1) OVER (WHEN size > 3)",
    "SELECT temp FROM demo GROUP BY SESSIONWINDOW(ms, 100, 10)",
    "SELECT * FROM demo GROUP BY COUNTWINDOW(3, 2)",
    "SELECT * FROM demo GROUP BY STATEWINDOW(size > 1, size > 5) OVER (PARTITION BY color)",
    "SELECT json_path_query_first(d, '$..a[?(@.b > 1)]'), json_path_exists(d, '$[1:2]') FROM demo",
    "SELECT d->a, d->b[0], arr[1:3], arr[-1], d.a FROM demo",
    "SELECT demo.color, t.id FROM demo LEFT JOIN t ON demo.color = t.color",
    "SELECT CASE WHEN size > 1 THEN 'big' ELSE 'small' END AS k, size % 0, size / 0 FROM demo",
    "SELECT abs(size), power(size, 1000), round(temp, 99), substring(color, -5, 99), lpad(color, 1000000000) FROM demo",
    "SELECT format_time(ts, 'yyyy-MM-dd'), date_add(ts, 9223372036854775807, 'ms'), cast(color AS bigint) FROM demo",
    "SELECT json_path_query(d, '$.a'), split_value(color, '', 0), array_position(arr, 1), repeat(color, 99999999999) FROM demo",
    "SELECT * FROM s WHERE x->y->z[9223372036854775807] IS NULL",
    "SELECT deduplicate(color, false), max(ts) - min(ts) FROM demo GROUP BY TUMBLINGWINDOW(dd, 1) FILTER (WHERE size IN (1, 2, 3))",
    "SELECT a.color FROM demo AS a INNER JOIN s ON a.ts = s.ts GROUP BY TUMBLINGWINDOW(ss, 5)",
    "SELECT lag(size, 1, 0) AS p INVISIBLE, p + 1 AS b, meta(topic), meta(a.b) FROM demo GROUP BY COUNTWINDOW(2) HAVING p > 0",
];

const TOKENS: &[&str] = &[
    " ",
    "(",
    ")",
    "[",
    "]",
    ",",
    "'",
    "\"",
    "->",
    ".",
    ":",
    "*",
    "-",
    "+",
    "/",
    "%",
    "=",
    "<>",
    "0",
    "-1",
    "1",
    "18014398509481984",
    "9223372036854775807",
    "-9223372036854775808",
    "1e308",
    "0.0",
    "NULL",
    "true",
    "''",
    "'\\'",
    "SELECT ",
    " FROM ",
    " WHERE ",
    " GROUP BY ",
    " HAVING ",
    " ORDER BY ",
    " LIMIT ",
    " AS ",
    " AND ",
    " OR ",
    " NOT ",
    " IN ",
    " BETWEEN ",
    " CASE ",
    " WHEN ",
    " THEN ",
    " END ",
    "TUMBLINGWINDOW(ss, 1)",
    "SESSIONWINDOW(ms, 1, 1)",
    "COUNTWINDOW(1)",
    "HOPPINGWINDOW(ms, 1, 1)",
    "HOPPINGWINDOW(ms, 1, 5)",
    "STATEWINDOW(size > 1)",
    " OVER (PARTITION BY color)",
    "SLIDINGWINDOW(ms, 0)",
    "count(*)",
    "avg(",
    "window_end()",
    "event_time()",
    "meta(*)",
    " INVISIBLE",
    " INVISIBLE, ",
    "ss",
    "dd",
    "ms",
    "demo",
    "s",
    "t",
    "color",
    "size",
    "ts",
    "d",
    "arr",
    "x",
    "\u{1F600}",
    "é",
    "\n",
    "--",
    "/*",
    "OVER (PARTITION BY color)",
    "FILTER (WHERE ",
    "'%'",
    "'_'",
    "\\",
    "$",
    "@",
    "?",
    ";",
];

const DDL_TOKENS: &[&str] = &[
    "CREATE STREAM x () WITH (DATASOURCE=\"a\");",
    "TIMESTAMP=\"ts\"",
    "TYPE=\"file\"",
    "FORMAT=\"json\"",
    "FORMAT=\"delimited\"",
    "DELIMITER=\"\"",
    "STRUCT(a STRUCT(b ARRAY(",
    "ARRAY(STRUCT(",
    "BIGINT",
    "FLOAT",
    "STRING",
    "BOOLEAN",
    "DATETIME",
    "BYTEA",
    "RETAIN_SIZE=\"-1\"",
    "KEY=\"\"",
    "SHARED=\"true\"",
    "STRICT_VALIDATION=\"true\"",
    "KIND=\"lookup\"",
    "CONF_KEY=\"x\"",
    "TIMESTAMP_FORMAT=\"\"",
    ")",
    "(",
    ",",
    "\"",
    "=",
    "CREATE TABLE",
    "18014398509481984",
];

struct Streams(Vec<StreamDef>);

impl Catalog for Streams {
    fn stream(&self, name: &str) -> Option<&StreamDef> {
        self.0.iter().find(|d| &*d.name == name)
    }
}

/// Seeds: the hand-picked ones and the SQL of every rule case.
fn seeds() -> Vec<String> {
    let mut out: Vec<String> = SEEDS.iter().map(|s| s.to_string()).collect();
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/rules");
    if let Ok(dirs) = std::fs::read_dir(rules) {
        for dir in dirs.flatten() {
            if let Ok(text) = std::fs::read_to_string(dir.path().join("rule.json"))
                && let Some(at) = text.find("\"sql\": \"")
            {
                let rest = &text[at + 8..];
                if let Some(end) = rest.find("\",\n") {
                    out.push(rest[..end].replace("\\\"", "\""));
                }
            }
        }
    }
    out
}

fn row(rng: &mut Rng) -> Row {
    let ts = match rng.below(6) {
        0 => i64::MAX,
        1 => i64::MIN,
        2 => -5,
        _ => rng.below(400) as i64,
    };
    let names = ["color", "size", "ts", "temp", "d", "arr", "x"];
    let pairs = names
        .iter()
        .map(|n| {
            (
                Arc::from(*n),
                if *n == "ts" {
                    Value::Int(ts)
                } else {
                    value(rng, 0)
                },
            )
        })
        .collect();
    Row::from_pairs(pairs, ts)
}

/// Runs a compiled statement over generated rows, in both time modes.
fn exercise(rng: &mut Rng, query: &oort_sql::Query) {
    for event_time in [true, false] {
        let tolerance = *rng.pick(&[0, 5, i64::MAX]);
        let table_row = Row::from_pairs(
            vec![
                (Arc::from("color"), Value::string("red")),
                (Arc::from("id"), Value::Int(1)),
            ],
            0,
        );
        let tables: HashMap<usize, Arc<Vec<Row>>> = (0..query.sources.len())
            .filter(|i| query.sources[*i].table)
            .map(|i| (i, Arc::new(vec![table_row.clone()])))
            .collect();
        let streams: Vec<usize> = (0..query.sources.len())
            .filter(|i| !query.sources[*i].table)
            .collect();
        let mut runner = QueryRunner::new(query.clone(), event_time, tolerance, tables);
        let meta = Value::Null;
        let mut out = Vec::new();
        let mut now = 0i64;
        for _ in 0..rng.below(12) {
            now = now.saturating_add(rng.below(50) as i64);
            let ctx = EvalCtx {
                now_ms: now,
                meta: &meta,
            };
            let rows = (0..1 + rng.below(3)).map(|_| row(rng)).collect();
            runner.push(*rng.pick(&streams), rows, &ctx, &mut out);
            if let Some(d) = runner.next_deadline() {
                runner.advance(d.max(now), &ctx, &mut out);
            }
        }
        let ctx = EvalCtx {
            now_ms: now,
            meta: &meta,
        };
        runner.finish(&ctx, &mut out);
        out.clear();
    }
}

/// One input: a DDL text or a statement.
#[derive(Debug)]
enum Input {
    Ddl(String),
    Sql(String),
}

/// Arguments a generated function call takes.
const ARGS: &[&str] = &[
    "color",
    "size",
    "temp",
    "ts",
    "d",
    "arr",
    "d->a",
    "arr[0]",
    "x",
    "*",
    "'a'",
    "''",
    "'%'",
    "'$.a'",
    "'yyyy-MM-dd HH:mm:ss'",
    "'2024-01-01T00:00:00Z'",
    "'{\"a\": [1, 2]}'",
    "0",
    "1",
    "-1",
    "2",
    "1.5",
    "9223372036854775807",
    "1e308",
    "null",
    "true",
];

/// A statement calling a few of the functions, with arguments of every kind, in the count
/// each takes or one more or fewer.
fn calls(rng: &mut Rng, functions: &[(&str, usize, usize)]) -> String {
    let call = |rng: &mut Rng| {
        let (name, min, max) = *rng.pick(functions);
        let n = match rng.below(8) {
            0 => min.saturating_sub(1),
            1 => max.saturating_add(1),
            _ => min + rng.below(max.min(min + 3) - min + 1),
        };
        let args: Vec<&str> = (0..n).map(|_| *rng.pick(ARGS)).collect();
        format!("{name}({})", args.join(", "))
    };
    let select: Vec<String> = (0..1 + rng.below(3)).map(|_| call(rng)).collect();
    let mut sql = format!("SELECT {} FROM demo", select.join(", "));
    if rng.one_in(3) {
        sql.push_str(&format!(" WHERE {} IS NOT NULL", call(rng)));
    }
    if rng.one_in(3) {
        sql.push_str(" GROUP BY TUMBLINGWINDOW(ms, 50)");
    }
    sql
}

fn make(rng: &mut Rng, seeds: &[String], functions: &[(&str, usize, usize)]) -> Input {
    match rng.below(10) {
        0 | 1 => Input::Ddl(mutate(rng, &[DDL.to_string()], DDL_TOKENS)),
        2..=4 => {
            let sql = calls(rng, functions);
            if rng.one_in(4) {
                Input::Sql(mutate(rng, &[sql], TOKENS))
            } else {
                Input::Sql(sql)
            }
        }
        _ => Input::Sql(mutate(rng, seeds, TOKENS)),
    }
}

/// Parses a DDL text, or compiles a statement and runs it.
fn exec(input: &Input, rng: &mut Rng, catalog: &Streams) -> String {
    match input {
        Input::Ddl(text) => match parse_streams(text, "fuzz", Path::new(".")) {
            Ok(defs) => format!("ddl: {} definitions", defs.len()),
            Err(e) => format!("ddl: {e}"),
        },
        Input::Sql(sql) => match compile(sql, catalog) {
            // `delay(ms, x)` holds the evaluation for as long as it is asked, as eKuiper's does:
            // such a statement is compiled, not run.
            Ok(_) if sql.to_ascii_lowercase().contains("delay") => "sql: compiled".into(),
            Ok(query) => {
                exercise(rng, &query);
                "sql: compiled and ran".into()
            }
            Err(e) => format!("sql: {e}"),
        },
    }
}

#[test]
fn no_panic_from_sql_ddl_or_rows() {
    let catalog = Streams(parse_streams(DDL, "fuzz", Path::new(".")).expect("the fuzz DDL parses"));
    let seeds = seeds();
    let functions: Vec<(&str, usize, usize)> = oort_sql::functions::all()
        .map(|f| (f.name, f.min_args, f.max_args.unwrap_or(f.min_args + 3)))
        .collect();
    Fuzz::from_env("sql", 3).run(
        |rng| make(rng, &seeds, &functions),
        |input, rng| exec(input, rng, &catalog),
    );
}
