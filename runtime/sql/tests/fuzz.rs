//! A time-budgeted fuzzer for the stream DDL parser, the SQL compiler and the evaluator: no
//! input reachable from a rule file may panic.
//!
//! Inputs are mutations of seed statements (every rule case's SQL and DDL and hand-picked edge
//! cases): tokens from a dictionary of SQL syntax and extreme numbers inserted, ranges deleted,
//! duplicated or spliced from another seed. A statement that compiles is then run, in event
//! time and in processing time, over generated rows (nulls, extreme numbers, nested objects,
//! arrays, strings). The generator is a small hand-written xorshift so that a failure is
//! reproduced from the seed it prints (`OORT_FUZZ_SEED`), without a fuzzing engine or a nightly
//! toolchain.
//!
//! The test run gives it a short budget; `cargo xtask fuzz-sql --seconds N` a long one
//! (`OORT_FUZZ_SECONDS`). It prints executions per second.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oort_sql::stream::{StreamDef, parse_streams};
use oort_sql::{Catalog, EvalCtx, QueryRunner, compile};
use oort_value::{Row, Value};

/// xorshift64*: deterministic from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

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

fn mutate(rng: &mut Rng, seeds: &[String], tokens: &[&str]) -> String {
    let mut text: Vec<char> = rng.pick(seeds).chars().collect();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(text.len() + 1);
        match rng.below(5) {
            0 | 1 => {
                let token: Vec<char> = rng.pick(tokens).chars().collect();
                text.splice(at..at, token);
            }
            2 => {
                let end = (at + rng.below(12)).min(text.len());
                text.drain(at..end);
            }
            3 => {
                let end = (at + rng.below(20)).min(text.len());
                let copy: Vec<char> = text[at..end].to_vec();
                text.splice(at..at, copy);
            }
            _ => {
                let other: Vec<char> = rng.pick(seeds).chars().collect();
                let from = rng.below(other.len() + 1);
                text.truncate(at);
                text.extend(&other[from..]);
            }
        }
    }
    text.into_iter().collect()
}

fn value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 2 { 7 } else { 9 }) {
        0 => Value::Null,
        1 => Value::Int(*rng.pick(&[0, 1, -1, i64::MAX, i64::MIN, 18014398509481984, 7])),
        2 => Value::Float(*rng.pick(&[
            0.0,
            -0.0,
            1.5,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::NAN,
            f64::INFINITY,
        ])),
        3 => {
            Value::string(*rng.pick(&["", "red", "%", "\u{1F600}é", "2024-01-01T00:00:00Z", "12"]))
        }
        4 => Value::Bool(rng.below(2) == 0),
        5 => Value::Int(rng.below(100) as i64),
        6 => Value::string("a".repeat(rng.below(40))),
        7 => Value::array((0..rng.below(5)).map(|_| value(rng, depth + 1)).collect()),
        _ => {
            let pairs: serde_json::Map<String, serde_json::Value> = (0..rng.below(4))
                .map(|i| {
                    (
                        ["a", "b", "y", "z"][i].to_string(),
                        value(rng, depth + 1).to_json(),
                    )
                })
                .collect();
            Value::from_json(serde_json::Value::Object(pairs))
        }
    }
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

/// One input: a DDL text or a statement (and its run).
fn one(rng: &mut Rng, seeds: &[String], catalog: &Streams) -> String {
    if rng.below(5) == 0 {
        let text = mutate(rng, &[DDL.to_string()], DDL_TOKENS);
        let _ = parse_streams(&text, "fuzz", Path::new("."));
        return text;
    }
    let sql = mutate(rng, seeds, TOKENS);
    if let Ok(query) = compile(&sql, catalog) {
        exercise(rng, &query);
    }
    sql
}

fn fuzz(budget: Duration) {
    let seed: u64 = std::env::var("OORT_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    let catalog = Streams(parse_streams(DDL, "fuzz", Path::new(".")).expect("the fuzz DDL parses"));
    let seeds = seeds();
    let started = Instant::now();
    let mut runs = 0u64;
    // Quiet the default hook: a panic is reported below with its input.
    let hook = std::panic::take_hook();
    static WHERE: Mutex<String> = Mutex::new(String::new());
    std::panic::set_hook(Box::new(|info| {
        if let (Some(at), Ok(mut w)) = (info.location(), WHERE.lock()) {
            *w = at.to_string();
        }
    }));
    let mut failure = None;
    while started.elapsed() < budget {
        // Each input has its own seed, so one failure replays alone.
        let input_seed = seed.wrapping_add(runs.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
        let mut rng = Rng(input_seed);
        let mut replay = Rng(input_seed);
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| one(&mut rng, &seeds, &catalog))) {
            let input = mutate_input(&mut replay, &seeds);
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let at = WHERE.lock().map(|w| w.clone()).unwrap_or_default();
            failure = Some(format!(
                "OORT_FUZZ_SEED={input_seed}: {what} at {at}\ninput: {input:?}"
            ));
            break;
        }
        runs += 1;
    }
    std::panic::set_hook(hook);
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "fuzz: {runs} inputs in {secs:.1} s ({:.0}/s), seed {seed}",
        runs as f64 / secs.max(1e-9)
    );
    if let Some(f) = failure {
        panic!("a panic from input: {f}");
    }
}

/// The input an input seed makes (for the failure report).
fn mutate_input(rng: &mut Rng, seeds: &[String]) -> String {
    if rng.below(5) == 0 {
        return mutate(rng, &[DDL.to_string()], DDL_TOKENS);
    }
    mutate(rng, seeds, TOKENS)
}

#[test]
fn no_panic_from_sql_ddl_or_rows() {
    let seconds = std::env::var("OORT_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    fuzz(Duration::from_secs(seconds));
}
