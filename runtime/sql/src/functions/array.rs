//! Array functions: size, search, element access, set operations, aggregation over elements,
//! joining, sorting and construction.
//!
//! Elements are compared by value: numbers of either type are equal when they denote the same
//! number, strings and bytes by content, arrays and objects deeply.

use std::collections::HashSet;
use std::sync::Arc;

use super::args::{MAX_ARRAY_LEN, any_nil, arg, bad_arg, fail, integer, string, wrong_type};
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

/// Argument `i` as an array; `None` for null.
fn array_or_null<'a>(f: &str, args: &'a [Value], i: usize) -> Result<Option<&'a [Value]>, FnError> {
    match arg(args, i) {
        Value::Null => Ok(None),
        Value::Array(items) => Ok(Some(items.as_slice())),
        _ => Err(wrong_type(f, args, i, "an array")),
    }
}

/// Argument `i` as an array.
fn array<'a>(f: &str, args: &'a [Value], i: usize) -> Result<&'a [Value], FnError> {
    array_or_null(f, args, i)?.ok_or_else(|| wrong_type(f, args, i, "an array"))
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
    for i in 0..args.len() {
        if let Some(items) = array_or_null("array_concat", args, i)? {
            out.extend(items.iter().cloned());
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
    let mismatch = |v: &Value, kind: &str| {
        fail(
            f,
            format!(
                "expected every element to be {kind}, found {}",
                v.type_name()
            ),
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
                        super::args::f64_to_i64(*x).ok_or_else(|| mismatch(v, "an integer"))?
                    }
                    _ => return Err(mismatch(v, "a number")),
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
                let x = v.as_f64().ok_or_else(|| mismatch(v, "a number"))?;
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
                    return Err(mismatch(v, "a string"));
                };
                if better(s.cmp(best)) {
                    best = s;
                }
            }
            Ok(Value::String(Arc::clone(best)))
        }
        other => Err(fail(
            f,
            format!("expected numbers or strings, found {}", other.type_name()),
        )),
    }
}

fn array_max(_: &FnCtx<'_>, args: &[Value]) -> R {
    extreme("array_max", args, true)
}

fn array_min(_: &FnCtx<'_>, args: &[Value]) -> R {
    extreme("array_min", args, false)
}

fn array_join(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let items = array("array_join", args, 0)?;
    let sep = string("array_join", args, 1)?;
    let null_text = if args.len() > 2 {
        string("array_join", args, 2)?
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
    let items = array("array_sort", args, 0)?;
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
            let index = integer("element_at", args, 1)?;
            let len = items.len() as i64;
            let at = if index < 0 { len + index } else { index };
            if !(0..len).contains(&at) {
                return Err(bad_arg(
                    "element_at",
                    args,
                    1,
                    format!("index {index} is out of range (the array has {len} elements)"),
                ));
            }
            Ok(items[at as usize].clone())
        }
        Value::Object(map) => {
            let key = string("element_at", args, 1)?;
            Ok(map.get(key).cloned().unwrap_or(Value::Null))
        }
        _ => Err(wrong_type("element_at", args, 0, "an array or an object")),
    }
}

fn kvpair_array_to_obj(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let items = array("kvpair_array_to_obj", args, 0)?;
    let mut out = Map::new();
    for item in items {
        let pair = match item {
            Value::Object(pair) if pair.len() == 2 => pair,
            _ => {
                return Err(fail(
                    "kvpair_array_to_obj",
                    "every element must be an object {\"key\": string, \"value\": any}",
                ));
            }
        };
        match (pair.get("key"), pair.get("value")) {
            (Some(Value::String(k)), Some(v)) => {
                out.insert(Arc::clone(k), v.clone());
            }
            _ => {
                return Err(fail(
                    "kvpair_array_to_obj",
                    "every element must be an object {\"key\": string, \"value\": any}",
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
    let count = integer("repeat", args, 1)?;
    let count = usize::try_from(count)
        .ok()
        .filter(|&n| n <= MAX_ARRAY_LEN)
        .ok_or_else(|| {
            bad_arg(
                "repeat",
                args,
                1,
                format!("the count must be between 0 and {MAX_ARRAY_LEN}, got {count}"),
            )
        })?;
    Ok(list(vec![arg(args, 0).clone(); count]))
}

fn sequence(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let start = integer("sequence", args, 0)?;
    let stop = integer("sequence", args, 1)?;
    let step = if args.len() > 2 {
        let step = integer("sequence", args, 2)?;
        if step == 0 {
            return Err(bad_arg("sequence", args, 2, "the step must not be zero"));
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
