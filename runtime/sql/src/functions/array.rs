//! Array functions: size, search, element access, set operations, aggregation over elements,
//! joining, sorting and construction.
//!
//! Elements are compared by value: numbers of either type are equal when they denote the same
//! number, strings and bytes by content, arrays and objects deeply.
//!
//! Errors use eKuiper's texts (`first argument should be array of interface{}`), after the
//! function's name.

use std::collections::HashSet;
use std::sync::Arc;

use super::args::{MAX_ARRAY_LEN, any_nil, arg, fail, integer};
use super::convert::cast_text;
use super::{FnCtx, FnError, ScalarDef};
use crate::value::{Map, Value};

type R = Result<Value, FnError>;

const fn def(
    name: &'static str,
    min: usize,
    max: Option<usize>,
    call: super::ScalarFn,
    doc: &'static str,
) -> ScalarDef {
    ScalarDef::new("array", name, min, max, call, doc)
}

#[rustfmt::skip]
pub(super) const DEFS: &[ScalarDef] = &[
    def("array_cardinality", 1, Some(1), array_cardinality, "array_cardinality(a): the number of elements of a that are not null (0 for null)"),
    def("array_concat", 1, None, array_concat, "array_concat(a, ...): the arrays joined in order, nulls skipped (null when empty)"),
    def("array_contains", 2, Some(2), array_contains, "array_contains(a, x): true when a has an element equal to x (false for a null array)"),
    def("array_contains_any", 2, Some(2), array_contains_any, "array_contains_any(a, b): true when a and b share an element (false for a null a)"),
    def("array_create", 0, None, array_create, "array_create(x, ...): an array of the arguments that are not null (null when none is)"),
    def("array_distinct", 1, Some(1), array_distinct, "array_distinct(a): a without repeated elements, first occurrences kept"),
    def("array_except", 2, Some(2), array_except, "array_except(a, b): the distinct elements of a that are not in b"),
    def("array_flatten", 1, Some(1), array_flatten, "array_flatten(a): a with its array elements spliced in, one level deep"),
    def("array_intersect", 2, Some(2), array_intersect, "array_intersect(a, b): the distinct elements of b that are also in a"),
    def("array_join", 2, Some(3), array_join, "array_join(a, sep[, null_text]): the elements of a as text joined by sep, nulls replaced by null_text or skipped"),
    def("array_last_position", 2, Some(2), array_last_position, "array_last_position(a, x): the 0-based index of the last element equal to x, or -1"),
    def("array_map", 2, Some(2), array_map, "array_map(f, a): the scalar function named f applied to each element of a"),
    def("array_max", 1, Some(1), array_max, "array_max(a): the largest element of a, nulls ignored (numbers or strings, as the first element)"),
    def("array_min", 1, Some(1), array_min, "array_min(a): the smallest element of a, nulls ignored (numbers or strings, as the first element)"),
    def("array_position", 2, Some(2), array_position, "array_position(a, x): the 0-based index of the first element equal to x, or -1"),
    def("array_remove", 2, Some(2), array_remove, "array_remove(a, x): a without the elements equal to x"),
    def("array_shuffle", 1, Some(1), array_shuffle, "array_shuffle(a): the elements of a in random order"),
    def("array_sort", 1, Some(1), array_sort, "array_sort(a): a sorted by the text of its elements (so 10 sorts before 9)"),
    def("array_union", 2, Some(2), array_union, "array_union(a, b): the distinct elements of a and then b (nulls count as empty)"),
    def("cardinality", 1, Some(1), cardinality, "cardinality(a): the number of elements of an array, 0 for anything else"),
    def("element_at", 2, Some(2), element_at, "element_at(a, i): element i of an array (0-based; negative counts from the end), or the entry i of an object"),
    def("kvpair_array_to_obj", 1, Some(1), kvpair_array_to_obj, "kvpair_array_to_obj(a): an object from an array of {\"key\": k, \"value\": v} objects"),
    def("repeat", 2, Some(2), repeat, "repeat(x, n): an array of n copies of x"),
    def("sequence", 2, Some(3), sequence, "sequence(start, stop[, step]): the integers from start to stop inclusive by step (default 1 or -1)"),
];

/// A hashable stand-in for scalar values; numbers of both types share one key per value.
#[derive(Hash, PartialEq, Eq)]
enum Key<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(u64),
    Str(&'a str),
    Bytes(&'a [u8]),
}

fn key(v: &Value) -> Option<Key<'_>> {
    Some(match v {
        Value::Null => Key::Null,
        Value::Bool(b) => Key::Bool(*b),
        Value::Int(i) => Key::Int(*i),
        Value::Float(x) if x.is_nan() => return None,
        Value::Float(x) => match super::args::f64_to_i64(*x) {
            Some(i) if i as f64 == *x => Key::Int(i),
            _ => Key::Float(x.to_bits()),
        },
        Value::String(s) => Key::Str(s),
        Value::Bytes(b) => Key::Bytes(b),
        Value::Array(_) | Value::Object(_) => return None,
    })
}

/// Element equality used by every array function.
fn same(a: &Value, b: &Value) -> bool {
    match (key(a), key(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// A set of values: hashed where possible, compared one by one otherwise.
#[derive(Default)]
struct Seen<'a> {
    keys: HashSet<Key<'a>>,
    others: Vec<&'a Value>,
}

impl<'a> Seen<'a> {
    fn of(items: &'a [Value]) -> Self {
        let mut seen = Self::default();
        for v in items {
            seen.insert(v);
        }
        seen
    }

    fn contains(&self, v: &Value) -> bool {
        match key(v) {
            Some(k) => self.keys.contains(&k),
            None => self.others.iter().any(|o| same(o, v)),
        }
    }

    /// Adds `v`; false when it was already there.
    fn insert(&mut self, v: &'a Value) -> bool {
        match key(v) {
            Some(k) => self.keys.insert(k),
            None if self.others.iter().any(|o| same(o, v)) => false,
            None => {
                self.others.push(v);
                true
            }
        }
    }
}

/// How eKuiper names argument `i` in its errors.
fn ordinal(i: usize) -> String {
    match i {
        0 => "first".to_string(),
        1 => "second".to_string(),
        2 => "third".to_string(),
        n => format!("argument {}", n + 1),
    }
}

/// eKuiper's `<nth> argument should be <what>`.
fn should_be(f: &str, i: usize, what: &str) -> FnError {
    fail(f, format!("{} argument should be {what}", ordinal(i)))
}

fn not_array(f: &str, i: usize) -> FnError {
    should_be(f, i, "array of interface{}")
}

/// Argument `i` as an array; `None` for null.
fn array_or_null<'a>(f: &str, args: &'a [Value], i: usize) -> Result<Option<&'a [Value]>, FnError> {
    match arg(args, i) {
        Value::Null => Ok(None),
        Value::Array(items) => Ok(Some(items.as_slice())),
        _ => Err(not_array(f, i)),
    }
}

/// Argument `i` as an array.
fn array<'a>(f: &str, args: &'a [Value], i: usize) -> Result<&'a [Value], FnError> {
    array_or_null(f, args, i)?.ok_or_else(|| not_array(f, i))
}

/// Argument `i` as an integer (a float without a fraction counts).
fn int_arg(f: &str, args: &[Value], i: usize) -> Result<i64, FnError> {
    integer(f, args, i).map_err(|_| should_be(f, i, "int"))
}

/// Argument `i` as a string.
fn string_arg<'a>(f: &str, args: &'a [Value], i: usize) -> Result<&'a str, FnError> {
    arg(args, i)
        .as_str()
        .ok_or_else(|| should_be(f, i, "string"))
}

fn list(items: Vec<Value>) -> Value {
    Value::array(items)
}

/// An array result that is `NULL` when empty (eKuiper's nil slice).
fn list_or_null(items: Vec<Value>) -> Value {
    if items.is_empty() {
        Value::Null
    } else {
        Value::array(items)
    }
}

fn cardinality(_: &FnCtx<'_>, args: &[Value]) -> R {
    Ok(Value::Int(match arg(args, 0) {
        Value::Array(items) => items.len() as i64,
        _ => 0,
    }))
}

fn array_cardinality(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Int(0));
    }
    let items = array("array_cardinality", args, 0)?;
    Ok(Value::Int(
        items.iter().filter(|v| !v.is_null()).count() as i64
    ))
}

fn array_create(_: &FnCtx<'_>, args: &[Value]) -> R {
    Ok(list_or_null(
        args.iter().filter(|v| !v.is_null()).cloned().collect(),
    ))
}

fn array_concat(_: &FnCtx<'_>, args: &[Value]) -> R {
    let mut out = Vec::new();
    for v in args {
        match v {
            Value::Null => {}
            Value::Array(items) => out.extend(items.iter().cloned()),
            _ => return Err(fail("array_concat", "array elements should be array")),
        }
    }
    Ok(list_or_null(out))
}

fn position(f: &str, args: &[Value], last: bool) -> R {
    let Some(items) = array_or_null(f, args, 0)? else {
        return Ok(Value::Int(-1));
    };
    let target = arg(args, 1);
    let found = if last {
        items.iter().rposition(|v| same(v, target))
    } else {
        items.iter().position(|v| same(v, target))
    };
    Ok(Value::Int(found.map_or(-1, |i| i as i64)))
}

fn array_position(_: &FnCtx<'_>, args: &[Value]) -> R {
    position("array_position", args, false)
}

fn array_last_position(_: &FnCtx<'_>, args: &[Value]) -> R {
    position("array_last_position", args, true)
}

fn array_contains(_: &FnCtx<'_>, args: &[Value]) -> R {
    let Some(items) = array_or_null("array_contains", args, 0)? else {
        return Ok(Value::Bool(false));
    };
    let target = arg(args, 1);
    Ok(Value::Bool(items.iter().any(|v| same(v, target))))
}

fn array_contains_any(_: &FnCtx<'_>, args: &[Value]) -> R {
    let Some(a) = array_or_null("array_contains_any", args, 0)? else {
        return Ok(Value::Bool(false));
    };
    let b = array("array_contains_any", args, 1)?;
    let seen = Seen::of(b);
    Ok(Value::Bool(a.iter().any(|v| seen.contains(v))))
}

fn array_remove(_: &FnCtx<'_>, args: &[Value]) -> R {
    let Some(items) = array_or_null("array_remove", args, 0)? else {
        return Ok(Value::Null);
    };
    let target = arg(args, 1);
    Ok(list(
        items.iter().filter(|v| !same(v, target)).cloned().collect(),
    ))
}

fn array_distinct(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let items = array("array_distinct", args, 0)?;
    let mut seen = Seen::default();
    Ok(list(
        items.iter().filter(|v| seen.insert(v)).cloned().collect(),
    ))
}

fn array_intersect(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let a = array("array_intersect", args, 0)?;
    let b = array("array_intersect", args, 1)?;
    let in_a = Seen::of(a);
    let mut taken = Seen::default();
    Ok(list(
        b.iter()
            .filter(|v| in_a.contains(v) && taken.insert(v))
            .cloned()
            .collect(),
    ))
}

fn array_union(_: &FnCtx<'_>, args: &[Value]) -> R {
    let a = array_or_null("array_union", args, 0)?.unwrap_or(&[]);
    let b = array_or_null("array_union", args, 1)?.unwrap_or(&[]);
    let mut seen = Seen::default();
    Ok(list(
        a.iter()
            .chain(b)
            .filter(|v| seen.insert(v))
            .cloned()
            .collect(),
    ))
}

fn array_except(_: &FnCtx<'_>, args: &[Value]) -> R {
    let Some(a) = array_or_null("array_except", args, 0)? else {
        return Ok(Value::Null);
    };
    let b = array_or_null("array_except", args, 1)?.unwrap_or(&[]);
    let mut seen = Seen::of(b);
    Ok(list(a.iter().filter(|v| seen.insert(v)).cloned().collect()))
}

fn array_flatten(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let items = array("array_flatten", args, 0)?;
    let mut out = Vec::with_capacity(items.len());
    for v in items {
        match v {
            Value::Array(inner) => out.extend(inner.iter().cloned()),
            other => out.push(other.clone()),
        }
    }
    Ok(list_or_null(out))
}

/// The largest (or smallest) element; the first element that is not null fixes the kind.
fn extreme(f: &str, args: &[Value], want_max: bool) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let items = array(f, args, 0)?;
    let mut present = items.iter().filter(|v| !v.is_null());
    let Some(first) = present.next() else {
        return Ok(Value::Null);
    };
    // eKuiper's text: the Go type the first element fixed, and the element as Go prints it.
    let mismatch = |v: &Value, kind: &str| {
        fail(
            f,
            format!("requires {kind} but found {}", crate::wording::go_typed(v)),
        )
    };
    let better = |a: std::cmp::Ordering| {
        if want_max { a.is_gt() } else { a.is_lt() }
    };
    match first {
        Value::Int(start) => {
            let mut best = *start;
            for v in present {
                let n = match v {
                    Value::Int(i) => *i,
                    Value::Float(x) => {
                        super::args::f64_to_i64(*x).ok_or_else(|| mismatch(v, "int64"))?
                    }
                    _ => return Err(mismatch(v, "int64")),
                };
                if better(n.cmp(&best)) {
                    best = n;
                }
            }
            Ok(Value::Int(best))
        }
        Value::Float(start) => {
            let mut best = *start;
            for v in present {
                let x = v.as_f64().ok_or_else(|| mismatch(v, "float64"))?;
                if better(x.total_cmp(&best)) {
                    best = x;
                }
            }
            Ok(Value::Float(best))
        }
        Value::String(start) => {
            let mut best = start;
            for v in present {
                let Value::String(s) = v else {
                    return Err(mismatch(v, "string"));
                };
                if better(s.cmp(best)) {
                    best = s;
                }
            }
            Ok(Value::String(Arc::clone(best)))
        }
        other => Err(fail(
            f,
            format!("found invalid arg {}", crate::wording::go_typed(other)),
        )),
    }
}

fn array_max(_: &FnCtx<'_>, args: &[Value]) -> R {
    extreme("array_max", args, true)
}

fn array_min(_: &FnCtx<'_>, args: &[Value]) -> R {
    extreme("array_min", args, false)
}

fn array_map(ctx: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let name = string_arg("array_map", args, 0)?;
    let items = array("array_map", args, 1)?;
    let Some(def) = super::lookup(name) else {
        let lower = name.to_ascii_lowercase();
        let aggregate = crate::aggregate::AggFunc::lookup(&lower).is_some()
            || crate::analytic::AnalyticFunc::lookup(&lower).is_some();
        return Err(fail(
            "array_map",
            if aggregate {
                "first argument should be a scalar function.".to_string()
            } else {
                format!("unknown built-in function: {name}.")
            },
        ));
    };
    if !def.accepts(1) {
        return Err(fail(
            "array_map",
            format!("validate {name} arguments failed"),
        ));
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let mapped =
            (def.call)(ctx, std::slice::from_ref(item)).map_err(|e| fail("array_map", e))?;
        out.push(mapped);
    }
    Ok(list(out))
}

fn array_join(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let items = array("array_join", args, 0)?;
    let sep = string_arg("array_join", args, 1)?;
    let null_text = if args.len() > 2 {
        string_arg("array_join", args, 2)?
    } else {
        ""
    };
    let parts: Vec<String> = items
        .iter()
        .filter_map(|v| match v {
            Value::Null if null_text.is_empty() => None,
            Value::Null => Some(null_text.to_string()),
            other => Some(cast_text(other)),
        })
        .collect();
    let total: usize = parts.iter().map(|p| p.len() + sep.len()).sum();
    if total > super::args::MAX_STRING_BYTES {
        return Err(fail("array_join", "the result is too long"));
    }
    Ok(Value::from(parts.join(sep)))
}

fn array_shuffle(_: &FnCtx<'_>, args: &[Value]) -> R {
    use rand::seq::SliceRandom;
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let mut items = array("array_shuffle", args, 0)?.to_vec();
    items.shuffle(&mut rand::rng());
    Ok(list(items))
}

fn array_sort(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let Value::Array(items) = arg(args, 0) else {
        return Err(fail("array_sort", "array elements should be array"));
    };
    let mut keyed: Vec<(String, &Value)> = items
        .iter()
        .map(|v| {
            let text = match v {
                Value::Null => "<nil>".to_string(),
                other => other.to_text(),
            };
            (text, v)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(list(keyed.into_iter().map(|(_, v)| v.clone()).collect()))
}

fn element_at(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    match arg(args, 0) {
        Value::Array(items) => {
            let index = int_arg("element_at", args, 1)?;
            let len = items.len() as i64;
            let at = if index < 0 { len + index } else { index };
            if !(0..len).contains(&at) {
                return Err(fail(
                    "element_at",
                    format!("index out of range: {index} of an array of {len}"),
                ));
            }
            Ok(items[at as usize].clone())
        }
        Value::Object(map) => {
            let key = string_arg("element_at", args, 1)?;
            Ok(map.get(key).cloned().unwrap_or(Value::Null))
        }
        _ => Err(fail(
            "element_at",
            "first argument should be []interface{} or map[string]interface{}",
        )),
    }
}

fn kvpair_array_to_obj(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let items = array("kvpair_array_to_obj", args, 0)?;
    let mut out = Map::new();
    for item in items {
        let Value::Object(pair) = item else {
            return Err(fail(
                "kvpair_array_to_obj",
                "array item should be map[string]interface{}",
            ));
        };
        match (pair.len(), pair.get("key"), pair.get("value")) {
            (2, Some(Value::String(k)), Some(v)) => {
                out.insert(Arc::clone(k), v.clone());
            }
            _ => {
                return Err(fail(
                    "kvpair_array_to_obj",
                    "array item should be key-value pair",
                ));
            }
        }
    }
    Ok(Value::object(out))
}

fn repeat(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let count = int_arg("repeat", args, 1)?;
    let count = usize::try_from(count)
        .ok()
        .filter(|&n| n <= MAX_ARRAY_LEN)
        .ok_or_else(|| {
            fail(
                "repeat",
                format!("the count must be between 0 and {MAX_ARRAY_LEN}, got {count}"),
            )
        })?;
    Ok(list(vec![arg(args, 0).clone(); count]))
}

fn sequence(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let start = int_arg("sequence", args, 0)?;
    let stop = int_arg("sequence", args, 1)?;
    let step = if args.len() > 2 {
        let step = int_arg("sequence", args, 2)?;
        if step == 0 {
            return Err(fail("sequence", "invalid step: should not be zero"));
        }
        step
    } else if start < stop {
        1
    } else {
        -1
    };
    let count = (i128::from(stop) - i128::from(start)) / i128::from(step) + 1;
    if count <= 0 {
        return Err(fail(
            "sequence",
            format!("a step of {step} never goes from {start} to {stop}"),
        ));
    }
    if count > MAX_ARRAY_LEN as i128 {
        return Err(fail(
            "sequence",
            format!("the sequence would have {count} elements, more than {MAX_ARRAY_LEN}"),
        ));
    }
    // Every term lies between start and stop, so it fits an i64.
    let items = (0..count)
        .map(|k| Value::Int((i128::from(start) + k * i128::from(step)) as i64))
        .collect();
    Ok(list(items))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: &[Value]) -> R {
        let meta = Value::Null;
        let ctx = FnCtx {
            now_ms: 0,
            meta: &meta,
            timestamp_ms: 0,
        };
        let def = DEFS.iter().find(|d| d.name == name).expect("function");
        (def.call)(&ctx, args)
    }

    fn i(x: i64) -> Value {
        Value::Int(x)
    }

    fn s(x: &str) -> Value {
        Value::from(x)
    }

    fn a(items: Vec<Value>) -> Value {
        Value::array(items)
    }

    fn ints(xs: &[i64]) -> Value {
        a(xs.iter().map(|&x| i(x)).collect())
    }

    #[test]
    fn sizes() {
        assert_eq!(call("cardinality", &[ints(&[1, 2, 3])]), Ok(i(3)));
        assert_eq!(call("cardinality", &[Value::Null]), Ok(i(0)));
        assert_eq!(call("cardinality", &[s("abc")]), Ok(i(0)));
        assert_eq!(
            call("array_cardinality", &[a(vec![i(1), Value::Null, i(2)])]),
            Ok(i(2))
        );
        assert_eq!(call("array_cardinality", &[Value::Null]), Ok(i(0)));
        assert!(call("array_cardinality", &[s("x")]).is_err());
    }

    #[test]
    fn construction() {
        assert_eq!(
            call("array_create", &[i(1), Value::Null, s("a")]),
            Ok(a(vec![i(1), s("a")]))
        );
        assert_eq!(call("array_create", &[Value::Null]), Ok(Value::Null));
        assert_eq!(call("array_create", &[]), Ok(Value::Null));
        assert_eq!(
            call("array_concat", &[ints(&[1]), Value::Null, ints(&[2, 3])]),
            Ok(ints(&[1, 2, 3]))
        );
        assert_eq!(call("array_concat", &[Value::Null]), Ok(Value::Null));
        assert!(call("array_concat", &[ints(&[1]), i(2)]).is_err());
        assert_eq!(call("repeat", &[s("x"), i(2)]), Ok(a(vec![s("x"), s("x")])));
        assert_eq!(call("repeat", &[s("x"), i(0)]), Ok(a(vec![])));
        assert!(call("repeat", &[s("x"), i(-1)]).is_err());
        assert!(call("repeat", &[s("x"), i(i64::MAX)]).is_err());
        assert_eq!(call("repeat", &[Value::Null, i(2)]), Ok(Value::Null));
    }

    #[test]
    fn sequences() {
        assert_eq!(call("sequence", &[i(1), i(4)]), Ok(ints(&[1, 2, 3, 4])));
        assert_eq!(call("sequence", &[i(3), i(1)]), Ok(ints(&[3, 2, 1])));
        assert_eq!(call("sequence", &[i(0), i(10), i(4)]), Ok(ints(&[0, 4, 8])));
        assert_eq!(call("sequence", &[i(2), i(2)]), Ok(ints(&[2])));
        assert!(call("sequence", &[i(1), i(5), i(0)]).is_err());
        assert!(call("sequence", &[i(5), i(1), i(1)]).is_err());
        assert!(call("sequence", &[i(i64::MIN), i(i64::MAX)]).is_err());
        assert!(call("sequence", &[s("1"), i(2)]).is_err());
    }

    #[test]
    fn searching() {
        let xs = a(vec![i(1), s("a"), Value::Float(1.0), s("a")]);
        assert_eq!(call("array_position", &[xs.clone(), s("a")]), Ok(i(1)));
        assert_eq!(
            call("array_position", &[xs.clone(), Value::Float(1.0)]),
            Ok(i(0))
        );
        assert_eq!(call("array_position", &[xs.clone(), s("z")]), Ok(i(-1)));
        assert_eq!(call("array_position", &[Value::Null, s("z")]), Ok(i(-1)));
        assert!(call("array_position", &[s("a"), s("a")]).is_err());
        assert_eq!(call("array_last_position", &[xs.clone(), s("a")]), Ok(i(3)));
        assert_eq!(
            call("array_last_position", &[Value::Null, s("a")]),
            Ok(i(-1))
        );
        assert!(call("array_last_position", &[i(1), s("a")]).is_err());
        assert_eq!(
            call("array_contains", &[xs.clone(), s("a")]),
            Ok(Value::Bool(true))
        );
        assert_eq!(
            call("array_contains", &[xs.clone(), i(2)]),
            Ok(Value::Bool(false))
        );
        assert_eq!(
            call("array_contains", &[Value::Null, i(2)]),
            Ok(Value::Bool(false))
        );
        assert!(call("array_contains", &[i(1), i(2)]).is_err());
        assert_eq!(
            call("array_contains_any", &[xs.clone(), ints(&[9, 1])]),
            Ok(Value::Bool(true))
        );
        assert_eq!(
            call("array_contains_any", &[xs.clone(), ints(&[9])]),
            Ok(Value::Bool(false))
        );
        assert_eq!(
            call("array_contains_any", &[Value::Null, ints(&[9])]),
            Ok(Value::Bool(false))
        );
        assert!(call("array_contains_any", &[xs, Value::Null]).is_err());
    }

    #[test]
    fn element_access() {
        let xs = ints(&[10, 20, 30]);
        assert_eq!(call("element_at", &[xs.clone(), i(0)]), Ok(i(10)));
        assert_eq!(call("element_at", &[xs.clone(), i(-1)]), Ok(i(30)));
        assert!(call("element_at", &[xs.clone(), i(3)]).is_err());
        assert!(call("element_at", &[xs.clone(), i(-4)]).is_err());
        assert!(call("element_at", &[xs, s("0")]).is_err());
        let obj = Value::object([(Arc::from("k"), i(1))].into_iter().collect());
        assert_eq!(call("element_at", &[obj.clone(), s("k")]), Ok(i(1)));
        assert_eq!(call("element_at", &[obj.clone(), s("x")]), Ok(Value::Null));
        assert!(call("element_at", &[obj, i(0)]).is_err());
        assert!(call("element_at", &[s("abc"), i(0)]).is_err());
        assert_eq!(call("element_at", &[Value::Null, i(0)]), Ok(Value::Null));
    }

    #[test]
    fn set_operations() {
        let xs = a(vec![
            i(1),
            i(2),
            i(2),
            ints(&[5]),
            ints(&[5]),
            Value::Float(2.0),
        ]);
        assert_eq!(
            call("array_distinct", std::slice::from_ref(&xs)),
            Ok(a(vec![i(1), i(2), ints(&[5])]))
        );
        assert!(call("array_distinct", &[s("x")]).is_err());
        assert_eq!(
            call("array_remove", &[xs.clone(), i(2)]),
            Ok(a(vec![i(1), ints(&[5]), ints(&[5])]))
        );
        assert_eq!(call("array_remove", &[Value::Null, i(2)]), Ok(Value::Null));
        assert!(call("array_remove", &[i(2), i(2)]).is_err());
        assert_eq!(
            call("array_intersect", &[ints(&[1, 2, 3]), ints(&[3, 3, 1, 9])]),
            Ok(ints(&[3, 1]))
        );
        assert_eq!(
            call("array_intersect", &[Value::Null, ints(&[1])]),
            Ok(Value::Null)
        );
        assert!(call("array_intersect", &[ints(&[1]), i(1)]).is_err());
        assert_eq!(
            call("array_union", &[ints(&[1, 2, 1]), ints(&[2, 3])]),
            Ok(ints(&[1, 2, 3]))
        );
        assert_eq!(
            call("array_union", &[Value::Null, Value::Null]),
            Ok(a(vec![]))
        );
        assert!(call("array_union", &[s("a"), Value::Null]).is_err());
        assert_eq!(
            call("array_except", &[ints(&[1, 2, 2, 3]), ints(&[3])]),
            Ok(ints(&[1, 2]))
        );
        assert_eq!(
            call("array_except", &[ints(&[1, 1]), Value::Null]),
            Ok(ints(&[1]))
        );
        assert_eq!(
            call("array_except", &[Value::Null, ints(&[1])]),
            Ok(Value::Null)
        );
        assert!(call("array_except", &[ints(&[1]), s("x")]).is_err());
    }

    #[test]
    fn flattening_and_extremes() {
        assert_eq!(
            call(
                "array_flatten",
                &[a(vec![ints(&[1, 4]), ints(&[2, 3]), i(5)])]
            ),
            Ok(ints(&[1, 4, 2, 3, 5]))
        );
        assert_eq!(
            call("array_flatten", &[a(vec![a(vec![])])]),
            Ok(Value::Null)
        );
        assert!(call("array_flatten", &[s("x")]).is_err());
        assert_eq!(
            call(
                "array_max",
                &[a(vec![Value::Null, i(3), Value::Float(7.9), i(5)])]
            ),
            Ok(i(7))
        );
        assert_eq!(
            call("array_min", &[a(vec![Value::Float(2.5), i(1)])]),
            Ok(Value::Float(1.0))
        );
        assert_eq!(
            call("array_max", &[a(vec![s("b"), s("c"), s("a")])]),
            Ok(s("c"))
        );
        assert_eq!(call("array_min", &[a(vec![s("b"), s("a")])]), Ok(s("a")));
        assert_eq!(call("array_max", &[a(vec![Value::Null])]), Ok(Value::Null));
        assert!(call("array_max", &[a(vec![i(1), s("a")])]).is_err());
        assert!(call("array_min", &[a(vec![Value::Bool(true)])]).is_err());
        assert_eq!(call("array_max", &[a(vec![])]), Ok(Value::Null));
    }

    #[test]
    fn joining_sorting_shuffling() {
        let xs = a(vec![
            i(1),
            Value::Null,
            s("b"),
            Value::Float(2.5),
            Value::Bool(true),
        ]);
        assert_eq!(
            call("array_join", &[xs.clone(), s(",")]),
            Ok(s("1,b,2.5,true"))
        );
        assert_eq!(
            call("array_join", &[xs.clone(), s("-"), s("?")]),
            Ok(s("1-?-b-2.5-true"))
        );
        assert!(call("array_join", &[xs.clone(), i(1)]).is_err());
        assert!(call("array_join", &[s("x"), s(",")]).is_err());
        assert_eq!(
            call("array_sort", &[a(vec![i(3), i(2), s("b"), s("a"), i(10)])]),
            Ok(a(vec![i(10), i(2), i(3), s("a"), s("b")]))
        );
        assert!(call("array_sort", &[s("x")]).is_err());
        let shuffled = call("array_shuffle", &[ints(&[1, 2, 3, 4])]).unwrap();
        let Value::Array(items) = &shuffled else {
            panic!("not an array")
        };
        let mut sorted: Vec<i64> = items.iter().filter_map(Value::as_i64).collect();
        sorted.sort();
        assert_eq!(sorted, [1, 2, 3, 4]);
        assert_eq!(call("array_shuffle", &[Value::Null]), Ok(Value::Null));
    }

    #[test]
    fn mapping_a_scalar_function() {
        let xs = a(vec![i(0), Value::Float(-0.4), Value::Float(1.2)]);
        assert_eq!(
            call("array_map", &[s("abs"), xs.clone()]),
            Ok(a(vec![i(0), Value::Float(0.4), Value::Float(1.2)]))
        );
        assert_eq!(
            call("array_map", &[s("ROUND"), xs.clone()]),
            Ok(a(vec![
                Value::Float(0.0),
                Value::Float(-0.0),
                Value::Float(1.0)
            ]))
        );
        assert_eq!(
            call("array_map", &[Value::Null, ints(&[1])]),
            Ok(Value::Null)
        );
        assert_eq!(call("array_map", &[s("abs"), a(vec![])]), Ok(Value::Null));
        let err = |args: &[Value]| call("array_map", args).unwrap_err().0;
        assert_eq!(
            err(&[s("pow"), xs.clone()]),
            "array_map: validate pow arguments failed"
        );
        assert_eq!(
            err(&[s("avg"), xs.clone()]),
            "array_map: first argument should be a scalar function."
        );
        assert_eq!(
            err(&[s("lag"), xs.clone()]),
            "array_map: first argument should be a scalar function."
        );
        assert_eq!(
            err(&[s("nope"), xs.clone()]),
            "array_map: unknown built-in function: nope."
        );
        assert_eq!(
            err(&[i(1), xs.clone()]),
            "array_map: first argument should be string"
        );
        assert_eq!(
            err(&[s("abs"), i(1)]),
            "array_map: second argument should be array of interface{}"
        );
        // The mapped function's own error, after both names.
        assert!(err(&[s("abs"), a(vec![s("x")])]).starts_with("array_map: abs: "));
    }

    #[test]
    fn key_value_pairs_to_object() {
        let pair = |k: &str, v: Value| {
            Value::object(
                [(Arc::from("key"), s(k)), (Arc::from("value"), v)]
                    .into_iter()
                    .collect(),
            )
        };
        let out = call(
            "kvpair_array_to_obj",
            &[a(vec![pair("key1", i(1)), pair("key2", i(2))])],
        )
        .unwrap();
        assert_eq!(out.field("key1"), Some(&i(1)));
        assert_eq!(out.field("key2"), Some(&i(2)));
        assert!(call("kvpair_array_to_obj", &[a(vec![i(1)])]).is_err());
        let bad = Value::object(
            [(Arc::from("key"), i(1)), (Arc::from("value"), i(2))]
                .into_iter()
                .collect(),
        );
        assert!(call("kvpair_array_to_obj", &[a(vec![bad])]).is_err());
        assert_eq!(call("kvpair_array_to_obj", &[Value::Null]), Ok(Value::Null));
    }

    #[test]
    fn numbers_share_keys_across_types() {
        assert!(same(&i(3), &Value::Float(3.0)));
        assert!(!same(&i(3), &Value::Float(3.5)));
        assert!(!same(&Value::Float(f64::NAN), &Value::Float(f64::NAN)));
        assert!(same(&ints(&[1]), &a(vec![Value::Float(1.0)])));
        assert!(!same(&s("1"), &i(1)));
    }
}
