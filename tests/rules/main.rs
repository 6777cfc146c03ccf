//! Data-driven rule cases: every folder of `tests/rules/` is a rule run end to end through the
//! `oort` binary and the shipped wasm sinks, as its own test named `rules::<folder>`
//! (`cargo test -p oort-tests --test rules -- rules::window_session`).
//!
//! A case holds `rule.json`, usually `streams.sql` and input data, optionally `args.txt` (more
//! options of `oort run-rule`, whitespace-separated), and either
//! - `expected.<ext>`: the run succeeds and `out/result.<ext>` matches it (`.jsonl` line by line
//!   as JSON values, `.json` as one JSON value, anything else as text), and optionally
//!   `summary.json`: fields that must appear in the run's JSON summary, and `exit.txt`: the
//!   exit code when it is not 0 (3: the run finished but some rows were not delivered); or
//! - `error.txt`: the run fails (exit 1) and each of its lines appears in the error output.
//!
//! With `OORT_BLESS=1`, a case whose output differs rewrites its `expected.*` files and the
//! values of the fields `summary.json` lists from the current run, then passes; exit codes and
//! `error.txt` are never rewritten (see `tests/rules/README.md`).

use std::path::Path;

use libtest_mimic::{Arguments, Trial};
use oort_tests::scratch::Scratch;
use serde_json::Value;

fn copy_case(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("listing a case") {
        let entry = entry.expect("a case entry");
        let name = entry.file_name();
        if name == "out" {
            continue;
        }
        let target = to.join(&name);
        if entry.path().is_dir() {
            std::fs::create_dir_all(&target).expect("creating a folder");
            copy_case(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copying a case file");
        }
    }
}

/// Numbers compare by value (`1` equals `1.0`), everything else structurally.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Every field of `expected` is in `actual` with the same value (recursively; arrays by index).
fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|w| contains(w, v))),
        (Value::Array(a), Value::Array(e)) => {
            e.len() <= a.len() && e.iter().zip(a).all(|(e, a)| contains(a, e))
        }
        _ => same(actual, expected),
    }
}

/// `shape` with each of its leaves replaced by the value at the same place in `actual`
/// (`null` where `actual` has none): what blessing writes into `summary.json`.
fn pick(actual: &Value, shape: &Value) -> Value {
    match shape {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), pick(actual.get(k).unwrap_or(&Value::Null), v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| pick(actual.get(i).unwrap_or(&Value::Null), v))
                .collect(),
        ),
        _ => actual.clone(),
    }
}

/// What blessing writes into `expected` from the output file `actual`: the output, except that
/// in a `.jsonl` file with as many lines, each line equal to the expected one (as
/// `check_output` compares them) keeps its expected spelling, so the diff shows only what changed.
fn blessed(expected: &Path, actual: &Path) -> String {
    let got = std::fs::read_to_string(actual).unwrap_or_default();
    let want = std::fs::read_to_string(expected).unwrap_or_default();
    if expected.extension().is_none_or(|e| e != "jsonl") {
        return got;
    }
    let (want_lines, got_lines): (Vec<&str>, Vec<&str>) =
        (want.lines().collect(), got.lines().collect());
    if want_lines.len() != got_lines.len() {
        return got;
    }
    let parse = |l: &str| serde_json::from_str::<Value>(l).ok();
    want_lines
        .iter()
        .zip(&got_lines)
        .map(|(w, g)| match (parse(w), parse(g)) {
            (Some(a), Some(b)) if same(&a, &b) => format!("{w}\n"),
            _ => format!("{g}\n"),
        })
        .collect()
}

/// Whether `OORT_BLESS=1`: expected files are rewritten from the current output.
fn blessing() -> bool {
    std::env::var_os("OORT_BLESS").is_some_and(|v| v == "1")
}

fn check_output(case: &str, expected: &Path, actual: &Path) -> Result<(), String> {
    let want = std::fs::read_to_string(expected).map_err(|e| format!("{case}: {e}"))?;
    let got = std::fs::read_to_string(actual)
        .map_err(|e| format!("{case}: no output {}: {e}", actual.display()))?;
    let ext = expected.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "jsonl" => {
            let parse = |text: &str| -> Result<Vec<Value>, String> {
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| {
                        serde_json::from_str(l)
                            .map_err(|e| format!("{case}: bad JSON line {l:?}: {e}"))
                    })
                    .collect()
            };
            let (w, g) = (parse(&want)?, parse(&got)?);
            if w.len() != g.len() || !w.iter().zip(&g).all(|(a, b)| same(a, b)) {
                return Err(format!(
                    "{case}: output differs\n--- expected\n{want}--- got\n{got}"
                ));
            }
        }
        "json" => {
            let w: Value =
                serde_json::from_str(&want).map_err(|e| format!("{case}: expected.json: {e}"))?;
            let g: Value = serde_json::from_str(&got)
                .map_err(|e| format!("{case}: output is not JSON: {e}\n{got}"))?;
            if !same(&w, &g) {
                return Err(format!(
                    "{case}: output differs\n--- expected\n{want}\n--- got\n{got}"
                ));
            }
        }
        _ => {
            if want != got {
                return Err(format!(
                    "{case}: output differs\n--- expected\n{want}--- got\n{got}"
                ));
            }
        }
    }
    Ok(())
}

fn run_case(case_dir: &Path, bless: bool) -> Result<(), String> {
    let case = case_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let scratch = Scratch::new();
    copy_case(case_dir, scratch.path());
    // `args.txt`: more options of `oort run-rule`, whitespace-separated.
    let extra = std::fs::read_to_string(case_dir.join("args.txt")).unwrap_or_default();
    let extra: Vec<&str> = extra.split_whitespace().collect();
    let run = scratch.run_rule(&extra);
    if let Ok(errors) = std::fs::read_to_string(case_dir.join("error.txt")) {
        if run.code != Some(1) {
            return Err(format!(
                "{case}: expected a failure (exit 1), got {:?}\n{}{}",
                run.code, run.stdout, run.stderr
            ));
        }
        for line in errors.lines().filter(|l| !l.trim().is_empty()) {
            if !run.stderr.contains(line.trim()) {
                return Err(format!(
                    "{case}: the error output lacks {line:?}:\n{}",
                    run.stderr
                ));
            }
        }
        return Ok(());
    }
    let want_code = std::fs::read_to_string(case_dir.join("exit.txt"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    if run.code != Some(want_code) {
        return Err(format!(
            "{case}: exit {:?}, expected {want_code}\nstdout:\n{}\nstderr:\n{}",
            run.code, run.stdout, run.stderr
        ));
    }
    let mut compared = 0;
    for entry in std::fs::read_dir(case_dir).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(ext) = name.strip_prefix("expected.") {
            let actual = scratch.path().join("out").join(format!("result.{ext}"));
            if let Err(differs) = check_output(&case, &path, &actual) {
                if !bless || !actual.is_file() {
                    return Err(differs);
                }
                std::fs::write(&path, blessed(&path, &actual))
                    .map_err(|e| format!("{case}: blessing {name}: {e}"))?;
                eprintln!("{case}: blessed {name}");
            }
            compared += 1;
        }
    }
    if let Ok(text) = std::fs::read_to_string(case_dir.join("summary.json")) {
        let want: Value =
            serde_json::from_str(&text).map_err(|e| format!("{case}: summary.json: {e}"))?;
        let summary = run.summary();
        if !contains(&summary, &want) {
            let blessed = pick(&summary, &want);
            if !bless || !contains(&summary, &blessed) {
                return Err(format!("{case}: the summary lacks {want}:\n{}", run.stdout));
            }
            let text = serde_json::to_string_pretty(&blessed).map_err(|e| e.to_string())? + "\n";
            std::fs::write(case_dir.join("summary.json"), text)
                .map_err(|e| format!("{case}: blessing summary.json: {e}"))?;
            eprintln!("{case}: blessed summary.json");
        }
        compared += 1;
    }
    if compared == 0 {
        return Err(format!(
            "{case}: the case has no expected.* , summary.json or error.txt"
        ));
    }
    Ok(())
}

/// The command line, with its name filters apart: libtest takes several (`cargo test -p
/// oort-tests -- cli rules::join` runs this target too), libtest-mimic one.
fn arguments() -> (Arguments, Vec<String>) {
    const WITH_VALUE: &[&str] = &[
        "--test-threads",
        "--logfile",
        "--skip",
        "--color",
        "--format",
    ];
    let mut rest = Vec::new();
    let mut filters = Vec::new();
    let mut raw = std::env::args();
    rest.extend(raw.next());
    while let Some(arg) = raw.next() {
        if WITH_VALUE.contains(&arg.as_str()) {
            rest.push(arg);
            rest.extend(raw.next());
        } else if arg.starts_with('-') {
            rest.push(arg);
        } else {
            filters.push(arg);
        }
    }
    let mut args = Arguments::from_iter(rest);
    if filters.len() <= 1 {
        args.filter = filters.pop();
    }
    (args, filters)
}

fn main() {
    let (args, filters) = arguments();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .expect("tests/rules")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("rule.json").is_file())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 10,
        "expected the rule cases in {}",
        root.display()
    );
    let bless = blessing();
    let trials = cases
        .into_iter()
        .map(|dir| {
            let case = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            Trial::test(format!("rules::{case}"), move || {
                run_case(&dir, bless).map_err(Into::into)
            })
        })
        // Several filters: a case runs when any of them matches its name, as with libtest.
        .filter(|trial: &Trial| {
            filters.is_empty()
                || filters.iter().any(|f| {
                    if args.exact {
                        trial.name() == f
                    } else {
                        trial.name().contains(f.as_str())
                    }
                })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
