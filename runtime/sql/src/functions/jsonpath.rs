//! JSONPath functions as eKuiper has them: `json_path_query`, `json_path_query_first` and
//! `json_path_exists`. Paths are parsed by `serde_json_path` (RFC 9535: `$.a.b`, `$[0]`,
//! `$.*`, `$..a`, `$[1:3]`, `$[?@.x > 1]`, also written `$[?(@.x > 1)]`).
//!
//! eKuiper's results are kept: a *definite* path (names and indexes only) gives the one value it
//! reaches, and an error when it reaches nothing; any other path (wildcard, descendants, slice,
//! union, filter) gives the array of what it matches, possibly empty.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use serde_json_path::JsonPath;

use super::args::{arg, bad_arg, wrong_type};
use super::{FnCtx, FnError, ScalarDef};
use crate::value::Value;

type R = Result<Value, FnError>;

const fn def(name: &'static str, call: super::ScalarFn, doc: &'static str) -> ScalarDef {
    ScalarDef::new("json", name, 2, Some(2), call, doc)
}

#[rustfmt::skip]
pub(super) const DEFS: &[ScalarDef] = &[
    def("json_path_exists", json_path_exists, "json_path_exists(x, path): whether the JSONPath path matches anything in x (false for an invalid path)"),
    def("json_path_query", json_path_query, "json_path_query(x, path): what the JSONPath path reaches in x: the value of a definite path ($.a.b, $.a[0]; an error if there is none), else the array of matches ($.a[*], $..b, $.a[?(@.x > 1)])"),
    def("json_path_query_first", json_path_query_first, "json_path_query_first(x, path): the first element of the array json_path_query(x, path) gives (an error when it is empty or not an array)"),
];

/// Paths parsed before, per thread (a rule calls its function with the same few paths).
const CACHE_SIZE: usize = 64;

thread_local! {
    static PATHS: RefCell<HashMap<String, Rc<Parsed>>> = RefCell::new(HashMap::new());
}

/// A parsed path, and whether it is definite.
#[derive(Debug)]
pub(crate) struct Parsed {
    path: JsonPath,
    definite: bool,
}

/// Parses `text` as a JSONPath; the error says where it is wrong.
pub(crate) fn parse(text: &str) -> Result<Parsed, String> {
    let path = JsonPath::parse(text).map_err(|e| format!("invalid JSONPath {text:?}: {e}"))?;
    Ok(Parsed {
        path,
        definite: is_definite(text),
    })
}

/// Whether a (valid) path names one place only: no wildcard, descendant segment, slice, union or
/// filter outside its quoted names.
fn is_definite(text: &str) -> bool {
    let mut quote = None;
    let mut escaped = false;
    let mut previous_dot = false;
    for c in text.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '*' | '?' | ':' | ',' => return false,
            '.' if previous_dot => return false,
            _ => {}
        }
        previous_dot = c == '.';
    }
    true
}

fn with_path<T>(f: &str, args: &[Value], run: impl FnOnce(&Parsed) -> T) -> Result<T, FnError> {
    let Value::String(text) = arg(args, 1) else {
        return Err(wrong_type(f, args, 1, "a JSONPath string"));
    };
    let cached = PATHS.with(|paths| paths.borrow().get(&**text).cloned());
    let parsed = match cached {
        Some(parsed) => parsed,
        None => {
            let parsed = Rc::new(parse(text).map_err(|e| bad_arg(f, args, 1, e))?);
            PATHS.with(|paths| {
                let mut paths = paths.borrow_mut();
                if paths.len() >= CACHE_SIZE {
                    paths.clear();
                }
                paths.insert(text.to_string(), Rc::clone(&parsed));
            });
            parsed
        }
    };
    Ok(run(&parsed))
}

/// The data a path runs over, as eKuiper takes it: an object or array as it is, a string as
/// the JSON it holds; anything else (`null` too) is refused in eKuiper's words.
fn data_of(f: &str, x: &Value) -> Result<serde_json::Value, FnError> {
    match x {
        Value::Object(_) | Value::Array(_) => Ok(x.to_json()),
        Value::String(text) => serde_json::from_str(text)
            .map_err(|_| FnError::new(format!("{f}: data '{text}' is not a valid json string"))),
        Value::Null => Err(FnError::new(format!("{f}: invalid data nil for jsonpath"))),
        other => Err(FnError::new(format!(
            "{f}: invalid data {} for jsonpath",
            other.to_text()
        ))),
    }
}

/// What the path reaches in `x`: `Ok(None)` when a definite path reaches nothing.
fn query(f: &str, args: &[Value]) -> Result<Option<Value>, FnError> {
    let data = data_of(f, arg(args, 0))?;
    with_path(f, args, |parsed| {
        let nodes = parsed.path.query(&data);
        if parsed.definite {
            nodes.first().map(|v| Value::from_json(v.clone()))
        } else {
            Some(Value::array(
                nodes
                    .all()
                    .into_iter()
                    .map(|v| Value::from_json(v.clone()))
                    .collect(),
            ))
        }
    })
}

fn nothing_at(f: &str, args: &[Value]) -> FnError {
    bad_arg(
        f,
        args,
        0,
        format!("the path {} reaches nothing", shown(arg(args, 1))),
    )
}

fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_json().to_string(),
    }
}

fn json_path_query(_: &FnCtx<'_>, args: &[Value]) -> R {
    if arg(args, 1).is_null() {
        return Ok(Value::Null);
    }
    query("json_path_query", args)?.ok_or_else(|| nothing_at("json_path_query", args))
}

fn json_path_query_first(_: &FnCtx<'_>, args: &[Value]) -> R {
    const F: &str = "json_path_query_first";
    if arg(args, 1).is_null() {
        return Ok(Value::Null);
    }
    match query(F, args)?.ok_or_else(|| nothing_at(F, args))? {
        // eKuiper indexes the first element without a check: a query matching nothing stops
        // its rule (`index out of range [0] with length 0`). Here it fails the row.
        Value::Array(items) => items.first().cloned().ok_or_else(|| {
            bad_arg(
                F,
                args,
                0,
                format!("the path {} matches nothing", shown(arg(args, 1))),
            )
        }),
        other => Err(bad_arg(
            F,
            args,
            0,
            format!(
                "the path {} reaches {}, not an array",
                shown(arg(args, 1)),
                shown(&other)
            ),
        )),
    }
}

fn json_path_exists(_: &FnCtx<'_>, args: &[Value]) -> R {
    if arg(args, 0).is_null() || arg(args, 1).is_null() {
        return Ok(Value::Bool(false));
    }
    // As eKuiper: an invalid path, or a definite one that reaches nothing, is "does not exist".
    let found = match query("json_path_exists", args) {
        Ok(Some(Value::Array(items))) => !items.is_empty(),
        Ok(Some(v)) => !v.is_null(),
        Ok(None) | Err(_) => false,
    };
    Ok(Value::Bool(found))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oort_value::json::parse_value;

    fn call(f: super::super::ScalarFn, data: &str, path: &str) -> R {
        let ctx = FnCtx {
            now_ms: 0,
            meta: &Value::Null,
            timestamp_ms: 0,
        };
        let data = parse_value(data.as_bytes()).expect("json");
        f(&ctx, &[data, Value::string(path)])
    }

    fn json(text: &str) -> Value {
        parse_value(text.as_bytes()).expect("json")
    }

    const DOC: &str = r#"{"a": 123, "b": {"c": [1, 2, 3]}, "people": [
        {"name": "ann", "age": 30}, {"name": "bob", "age": 20}, {"name": "cy", "age": 40}]}"#;

    #[test]
    fn a_definite_path_gives_its_value() {
        assert_eq!(call(json_path_query, DOC, "$.a"), Ok(Value::Int(123)));
        assert_eq!(call(json_path_query, DOC, "$.b.c[1]"), Ok(Value::Int(2)));
        assert_eq!(
            call(json_path_query, DOC, "$['b']['c'][-1]"),
            Ok(Value::Int(3))
        );
        assert_eq!(
            call(json_path_query, DOC, "$.b"),
            Ok(json(r#"{"c": [1, 2, 3]}"#))
        );
        // eKuiper's own table: `$[0].a` on an array of objects.
        assert_eq!(
            call(
                json_path_query,
                r#"[{"a": "single", "c": 20.2}, {"b": "b"}]"#,
                "$[0].a"
            ),
            Ok(Value::string("single"))
        );
    }

    #[test]
    fn a_definite_path_that_reaches_nothing_is_an_error() {
        let err = call(json_path_query, DOC, "$.nope").unwrap_err();
        assert_eq!(
            err.0,
            "json_path_query: argument 1: the path \"$.nope\" reaches nothing"
        );
        assert_eq!(
            call(json_path_exists, DOC, "$.nope"),
            Ok(Value::Bool(false))
        );
    }

    #[test]
    fn other_paths_give_the_array_of_matches() {
        assert_eq!(
            call(json_path_query, DOC, "$.people[?(@.age > 25)].name"),
            Ok(json(r#"["ann", "cy"]"#))
        );
        assert_eq!(call(json_path_query, DOC, "$.b.c[0:2]"), Ok(json("[1, 2]")));
        assert_eq!(call(json_path_query, DOC, "$..c"), Ok(json("[[1, 2, 3]]")));
        assert_eq!(
            call(json_path_query, DOC, "$.people[*].age"),
            Ok(json("[30, 20, 40]"))
        );
        assert_eq!(
            call(json_path_query, DOC, "$.people[?@.age > 99]"),
            Ok(json("[]"))
        );
    }

    #[test]
    fn query_first_takes_the_first_match() {
        assert_eq!(
            call(json_path_query_first, DOC, "$.people[?(@.age < 35)].name"),
            Ok(Value::string("ann"))
        );
        // A definite path to an array: its first element (as eKuiper).
        assert_eq!(call(json_path_query_first, DOC, "$.b.c"), Ok(Value::Int(1)));
        let err = call(json_path_query_first, DOC, "$.people[?@.age > 99]").unwrap_err();
        assert_eq!(
            err.0,
            "json_path_query_first: argument 1: the path \"$.people[?@.age > 99]\" matches nothing"
        );
        let err = call(json_path_query_first, DOC, "$.a").unwrap_err();
        assert_eq!(
            err.0,
            "json_path_query_first: argument 1: the path \"$.a\" reaches 123, not an array"
        );
    }

    #[test]
    fn the_data_is_an_object_an_array_or_a_json_text() {
        // eKuiper's `TestJsonPathFunc_Apply1` 13, 14 and 16: a string is the JSON it holds,
        // and a null (a missing field) is refused.
        let ctx = FnCtx {
            now_ms: 0,
            meta: &Value::Null,
            timestamp_ms: 0,
        };
        let text = Value::string(r#"[{"arm.left": "Shield of faith"}]"#);
        assert_eq!(
            json_path_query(&ctx, &[text, Value::string(r#"$[0]["arm.left"]"#)]),
            Ok(Value::string("Shield of faith"))
        );
        for (data, error) in [
            (Value::Null, "invalid data nil for jsonpath"),
            (Value::Int(3), "invalid data 3 for jsonpath"),
            (
                Value::string("{oops"),
                "data '{oops' is not a valid json string",
            ),
        ] {
            for (f, name) in [
                (json_path_query as super::super::ScalarFn, "json_path_query"),
                (json_path_query_first, "json_path_query_first"),
            ] {
                let err = f(&ctx, &[data.clone(), Value::string("$.a")]).unwrap_err();
                assert_eq!(err.0, format!("{name}: {error}"));
            }
            assert_eq!(
                json_path_exists(&ctx, &[data.clone(), Value::string("$.a")]),
                Ok(Value::Bool(false))
            );
        }
    }

    #[test]
    fn exists_says_whether_anything_matches() {
        assert_eq!(call(json_path_exists, DOC, "$.a"), Ok(Value::Bool(true)));
        assert_eq!(
            call(json_path_exists, DOC, "$.people[?(@.name == 'bob')]"),
            Ok(Value::Bool(true))
        );
        assert_eq!(
            call(json_path_exists, DOC, "$.people[?(@.name == 'zed')]"),
            Ok(Value::Bool(false))
        );
        assert_eq!(call(json_path_exists, DOC, "$.a["), Ok(Value::Bool(false)));
    }

    #[test]
    fn errors_name_the_argument() {
        let err = call(json_path_query, DOC, "a.b").unwrap_err();
        assert!(
            err.0
                .starts_with("json_path_query: argument 2: invalid JSONPath \"a.b\""),
            "{}",
            err.0
        );
        let ctx = FnCtx {
            now_ms: 0,
            meta: &Value::Null,
            timestamp_ms: 0,
        };
        let err = json_path_query(&ctx, &[json(DOC), Value::Int(1)]).unwrap_err();
        assert_eq!(
            err.0,
            "json_path_query: argument 2: expected a JSONPath string, got bigint"
        );
        // A null path gives null; null data is refused (see below).
        assert_eq!(
            json_path_query(&ctx, &[json(DOC), Value::Null]),
            Ok(Value::Null)
        );
    }

    #[test]
    fn definite_paths_are_told_apart() {
        for path in ["$", "$.a", "$.a[0]", "$['a*']", "$.a[-1]", "$[\"x:y\"].b"] {
            assert!(is_definite(path), "{path}");
        }
        for path in ["$.*", "$..a", "$.a[1:2]", "$.a[0,1]", "$.a[?@.b]", "$.a[*]"] {
            assert!(!is_definite(path), "{path}");
        }
    }
}
